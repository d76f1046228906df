"""The small model `infermeter demo` runs: a two-layer MLP (16 -> 32 -> 4) with fixed weights.

The .onnx file ships beside this module; this builder (which needs the `onnx` package, a test
dependency) is how it was made, and a test checks that the shipped file still matches it.

    python -m collector.demo.model   # rewrite tiny_mlp.onnx
"""

from __future__ import annotations

from pathlib import Path

MODEL_PATH = Path(__file__).with_name("tiny_mlp.onnx")
INPUT_NAME = "features"
OUTPUT_NAME = "scores"
INPUT_WIDTH = 16


def _weights(rows: int, cols: int, salt: int) -> list[float]:
    # Deterministic, dependency-free pseudo-random weights in [-0.5, 0.5).
    return [((i * 7919 + salt * 104729) % 1000) / 1000 - 0.5 for i in range(rows * cols)]


def build_tiny_mlp():
    """The model as an onnx.ModelProto (batch dimension dynamic)."""
    from onnx import TensorProto, helper

    hidden = 32
    inits = [
        helper.make_tensor("w1", TensorProto.FLOAT, [INPUT_WIDTH, hidden], _weights(INPUT_WIDTH, hidden, 1)),
        helper.make_tensor("b1", TensorProto.FLOAT, [hidden], _weights(1, hidden, 2)),
        helper.make_tensor("w2", TensorProto.FLOAT, [hidden, 4], _weights(hidden, 4, 3)),
        helper.make_tensor("b2", TensorProto.FLOAT, [4], _weights(1, 4, 4)),
    ]
    nodes = [
        helper.make_node("MatMul", [INPUT_NAME, "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", INPUT_WIDTH])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 4])],
        initializer=inits,
    )
    # IR 8 / opset 17 load on every onnxruntime the agent supports (JetPack 6 ships 1.16+).
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="infermeter", ir_version=8
    )
    return model


if __name__ == "__main__":
    MODEL_PATH.write_bytes(build_tiny_mlp().SerializeToString())
    print(f"wrote {MODEL_PATH}")
