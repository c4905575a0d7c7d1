// The CLI tests' way to run a command line (one of cq's binaries and its arguments): exit code, stdout and stderr
// (stderr through a temporary file, so a test can check that progress stays quiet when it is not a terminal).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "test_support.h"

namespace cq::test {

struct RunResult {
    int exit_code = -1;  // 128 + the signal for a command killed by one
    std::string out, err;
};

/// Runs `command_line` through the shell.
inline RunResult run_command(const std::string& command_line) {
    const TempDir dir("cq_command");
    const std::string err_path = dir.file("stderr");
    RunResult r;
    FILE* p = ::popen((command_line + " 2>" + err_path).c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::ifstream e(err_path);
    r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
    return r;
}

}  // namespace cq::test
