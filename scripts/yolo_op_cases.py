# Single-operator ONNX graphs on awkward cases for the operators the YOLO import added (Split, Slice, Shape, Gather,
# Expand, Cast, Range, ConstantOfShape, Resize, Equal / Less / Greater, Where, Pow, integer arithmetic), each with one
# float input "x" and one output, and ONNX Runtime's outputs on seeded inputs: tests/data/yolo/ops/ (read by
# tests/test_onnx_yolo.cpp). Called by scripts/make_yolo_onnx.py (needs the onnx package: pip install onnx==1.14.1).
import json
import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

I64_MAX, I64_MIN = 2**63 - 1, -2**63


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def f32(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


def graph(nodes, x_shape, inits=(), opset=17, out="y"):
    g = helper.make_graph(nodes, "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="cq yolo_op_cases")
    m.ir_version = 8
    return m


def flat_concat(names, out="y"):
    """Reshape each of `names` to 1-D and concatenate (so several results of different shapes form one output)."""
    nodes = [helper.make_node("Reshape", [n, "minus_one"], [n + "_flat"]) for n in names]
    nodes.append(helper.make_node("Concat", [n + "_flat" for n in names], [out], axis=0))
    return nodes


def cases():
    c = []
    N = helper.make_node
    # Split: opset 12's attribute, opset 13's input with a zero-sized part, opset 18's num_outputs with a short last part
    c.append(("split_opset12_attr", graph([N("Split", ["x"], ["a", "b", "c"], axis=1, split=[2, 4, 1]),
                                          N("Concat", ["c", "a", "b"], ["y"], axis=1)], [2, 7, 3], opset=12), [2, 7, 3]))
    c.append(("split_opset13_input_zero_part", graph([N("Split", ["x", "sizes"], ["a", "b", "c"], axis=-1),
                                                      N("Concat", ["c", "b", "a"], ["y"], axis=-1)], [2, 3, 7],
                                                     [i64("sizes", [3, 0, 4])], opset=13), [2, 3, 7]))
    c.append(("split_opset18_num_outputs", graph([N("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
                                                  N("Concat", ["c", "b", "a"], ["y"], axis=1)], [2, 7], opset=18), [2, 7]))
    # Slice: negative steps, out-of-range and INT64 extremes, negative axes, an empty result, opset 1's attributes
    c.append(("slice_awkward", graph(
        [N("Slice", ["x", "s1", "e1", "a1", "t1"], ["p"]), N("Slice", ["x", "s2", "e2", "a2", "t2"], ["q"]),
         N("Slice", ["x", "s3", "e3"], ["r"])] + flat_concat(["p", "q", "r"]), [4, 5, 6],
        [i64("s1", [-1, 10]), i64("e1", [I64_MIN, -8]), i64("a1", [0, 2]), i64("t1", [-1, -2]),
         i64("s2", [1]), i64("e2", [I64_MAX]), i64("a2", [-2]), i64("t2", [2]),
         i64("s3", [3, 0, 0]), i64("e3", [1, 5, 6]), i64("minus_one", [-1])]), [4, 5, 6]))
    c.append(("slice_opset9_attrs", graph([N("Slice", ["x"], ["y"], starts=[1, -3], ends=[1000, -1], axes=[1, 2])], [2, 4, 5], opset=9),
              [2, 4, 5]))
    # Gather: 2-D indices with negatives on axis 1; a scalar index (rank drops) on axis 0; integer data (a shape)
    c.append(("gather_awkward", graph(
        [N("Gather", ["x", "idx"], ["p"], axis=1), N("Gather", ["x", "scalar"], ["q"], axis=0),
         N("Shape", ["x"], ["s"]), N("Gather", ["s", "sidx"], ["g"]), N("Cast", ["g"], ["gf"], to=TensorProto.FLOAT)]
        + flat_concat(["p", "q", "gf"]), [3, 4, 5],
        [i64("idx", [[-1, 0], [2, 2]]), i64("scalar", -3), i64("sidx", [2, -3, 1]), i64("minus_one", [-1])]), [3, 4, 5]))
    # Shape with opset 15's start / end, integer arithmetic (Div truncates toward zero), Range, ConstantOfShape, Expand
    c.append(("shape_arithmetic", graph(
        [N("Shape", ["x"], ["s"], start=-2), N("Sub", ["s", "seven"], ["d"]), N("Div", ["d", "three"], ["q"]),
         N("Mul", ["q", "s"], ["m"]), N("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
         N("Shape", ["x"], ["all"], end=1), N("Gather", ["all", "zero"], ["b"]), N("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
         N("Range", ["half", "bf", "step"], ["r"]), N("Range", ["five", "minus_two_i", "minus_two_i"], ["ri"]),
         N("Cast", ["ri"], ["rif"], to=TensorProto.FLOAT),
         N("Shape", ["x"], ["sx"]), N("ConstantOfShape", ["sx"], ["k"], value=numpy_helper.from_array(np.array([2.5], np.float32))),
         N("Add", ["x", "k"], ["xk"]), N("Expand", ["col", "eshape"], ["ex"])]
        + flat_concat(["mf", "r", "rif", "xk", "ex"]), [5, 3, 4],
        [i64("seven", [7]), i64("three", 3), i64("zero", 0), f32("half", 0.5), f32("step", 1.5), i64("five", 5), i64("minus_two_i", -2),
         f32("col", [[1.0], [2.0], [3.0]]), i64("eshape", [2, 1, 4]), i64("minus_one", [-1])], opset=17), [5, 3, 4]))
    # Cast: float → int32 (truncation toward zero), → bool, → int64 → float
    c.append(("cast_awkward", graph(
        [N("Mul", ["x", "scale"], ["xs"]), N("Cast", ["xs"], ["i"], to=TensorProto.INT32), N("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         N("Cast", ["xs"], ["bb"], to=TensorProto.BOOL), N("Cast", ["bb"], ["fb"], to=TensorProto.FLOAT)] + flat_concat(["fi", "fb"]),
        [2, 6], [f32("scale", 3.0), i64("minus_one", [-1])]), [2, 6]))
    # Equal / Less / Greater / Where / Pow with broadcasting
    c.append(("where_compare_pow", graph(
        [N("Greater", ["x", "zero_f"], ["gt"]), N("Pow", ["x", "two_f"], ["sq"]), N("Where", ["gt", "x", "sq"], ["w"]),
         N("Less", ["x", "row"], ["lt"]), N("Cast", ["lt"], ["ltf"], to=TensorProto.FLOAT),
         N("Shape", ["x"], ["s"]), N("Equal", ["s", "three_i"], ["eq"]), N("Cast", ["eq"], ["eqf"], to=TensorProto.FLOAT)]
        + flat_concat(["w", "ltf", "eqf"]), [2, 3, 4],
        [f32("zero_f", 0.0), f32("two_f", 2.0), f32("row", [[-0.5, 0.0, 0.25, 0.5]]), i64("three_i", [3]), i64("minus_one", [-1])]),
        [2, 3, 4]))
    # Resize, nearest: every coordinate mode and rounding rule, up and down, scales and sizes, non-integer factors
    resize = [("asymmetric", "floor", [1, 1, 2, 2], None, 17), ("half_pixel", "round_prefer_floor", [1, 1, 1.5, 0.6], None, 17),
              ("align_corners", "round_prefer_ceil", None, [1, 2, 7, 4], 17), ("pytorch_half_pixel", "ceil", None, [1, 2, 1, 9], 17),
("half_pixel_symmetric", "round_prefer_floor", None, [1, 2, 4, 3], 19),
              ("asymmetric", "round_prefer_ceil", [1, 1, 0.5, 3.0], None, 11)]
    for k, (mode, rounding, scales, sizes, opset) in enumerate(resize):
        inits = [f32("roi", [])] if opset < 13 else []
        inputs = ["x", "roi" if opset < 13 else ""]
        if scales is not None:
            inits.append(f32("scales", scales))
            inputs.append("scales")
        else:
            inits.append(i64("sizes", sizes))
            inputs += ["", "sizes"]
        c.append((f"resize_{k}_{mode}_{rounding}", graph([N("Resize", inputs, ["y"], mode="nearest", coordinate_transformation_mode=mode,
                                                            nearest_mode=rounding)], [1, 2, 3, 5], inits, opset=opset), [1, 2, 3, 5]))
    # Softmax over axis 1 of a 4-D tensor: opset 12 (the flattened [.., axis:] block) and opset 13 (one axis), as DFL
    c.append(("softmax_axis1_opset12", graph([N("Softmax", ["x"], ["y"], axis=1)], [2, 3, 2, 4], opset=12), [2, 3, 2, 4]))
    c.append(("softmax_axis1_opset13", graph([N("Softmax", ["x"], ["y"], axis=1)], [2, 3, 2, 4], opset=13), [2, 3, 2, 4]))
    return c


def make(out_dir, run_ort):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20)
    jobs, refs = [], []
    for name, model, dims in cases():
        path = os.path.join(out_dir, name + ".onnx")
        save(model, path)
        x = rng.uniform(-2, 2, size=dims).astype(np.float32)
        if name.startswith("cast"):
            x.reshape(-1)[:4] = [0.0, -0.9 / 3, 2.7 / 3, -2.7 / 3]  # zero, and truncation toward zero on both sides
        if name.startswith("where"):
            x.reshape(-1)[:3] = [0.0, -0.5, 0.5]  # ties of the comparisons
        x = np.round(x, 4).astype(np.float32)  # short decimals: the committed input is exact
        jobs.append((path, dims, x.reshape(-1)))
        refs.append({"name": name, "model": name + ".onnx", "dims": dims, "input": [float(v) for v in x.reshape(-1)]})
    outs, version = run_ort(jobs)
    for r, (y, dims) in zip(refs, outs):
        r["output"] = [float("%.9g" % v) for v in y]
        r["output_dims"] = dims
    with open(os.path.join(out_dir, "ops.reference.json"), "w") as f:
        json.dump({"ort_version": version, "cases": refs}, f, indent=0)
    print(f"{len(refs)} operator cases in {out_dir}")
