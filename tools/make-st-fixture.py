#!/usr/bin/env python3
"""make-st-fixture.py - writes tests/fixtures/ref.safetensors with the reference
safetensors library, so tests/test-safetensors.c can prove that r1 reads what the
reference implementation writes (dtypes F32, BF16, F16, I32; a 0-dim scalar; an
empty tensor; metadata).

Regenerate (needs `pip install safetensors numpy`; written with safetensors 0.8.0,
numpy 2.4):
    python3 tools/make-st-fixture.py tests/fixtures/ref.safetensors

Fixture version 1.  The values are also spelled out in test_reference_fixture();
change both together.  "f16" is numpy's round-to-nearest-even of "f16_src", so the
test also checks r1_f32_to_f16 against numpy bit for bit.
"""
import sys

import numpy as np
from safetensors import serialize_file

try:
    from safetensors import TensorSpec
except ImportError:  # safetensors < 0.7 takes plain dicts
    TensorSpec = None


def spec(arr, dtype):
    arr = np.require(arr, requirements="C")  # ascontiguousarray would make 0-dim 1-dim
    if TensorSpec is not None:
        return TensorSpec(dtype=dtype, shape=list(arr.shape), data_ptr=arr.ctypes.data,
                          data_len=arr.nbytes)
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.tobytes()}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ref.safetensors"
    f32 = np.array([[0.0, 1.0, -2.5], [3.14159274, 1e-3, -65504.0]], dtype="<f4")
    f16_src = np.array([0.1, 1.0 / 3.0, 65519.0, 65520.0, 1e-7, 2.9e-8, -2.0009766, 6.1e-5],
                       dtype="<f4")
    with np.errstate(over="ignore"):  # 65520 overflows to inf on purpose
        f16 = f16_src.astype("<f2")  # numpy rounds to nearest, ties to even
    # bf16 as raw bits: 1.0, -0.5, 3.0, the smallest subnormal (numpy has no bf16)
    bf16 = np.array([[0x3F80, 0xBF00], [0x4040, 0x0001]], dtype="<u2")
    i32 = np.array([-7, 0, 2147483647], dtype="<i4")
    scalar = np.array(42.5, dtype="<f4")
    empty = np.zeros((0, 3), dtype="<f4")
    arrays = {  # the arrays must stay alive while serialize_file reads their memory
        "f32": (f32, "float32"),
        "f16_src": (f16_src, "float32"),
        "f16": (f16, "float16"),
        "bf16": (bf16, "bfloat16"),
        "i32": (i32, "int32"),
        "scalar": (scalar, "float32"),
        "empty": (empty, "float32"),
    }
    tensors = {name: spec(arr, dt) for name, (arr, dt) in arrays.items()}
    serialize_file(tensors, out, metadata={"format": "pt", "r1_fixture": "v1"})
    print("f16 bits:", [hex(x) for x in f16.view("<u2")])


if __name__ == "__main__":
    main()
