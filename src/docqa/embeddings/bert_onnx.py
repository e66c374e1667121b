"""The ONNX graph of a BERT sentence encoder, written straight from its files: no torch, no transformers.

``read_bert`` reads a sentence-transformers folder (config.json, model.safetensors, modules.json,
1_Pooling/config.json, sentence_bert_config.json) and says, as ``UnsupportedModel``, why it cannot build one that
is not a plain BERT with mean pooling. ``write_bert_onnx`` writes the graph that a torch trace of the same model
gives: inputs input_ids, attention_mask and token_type_ids (int64, [batch, sequence]), output
``sentence_embedding`` ([batch, dim], the mean of the real tokens' last hidden states, L2-normalised). Its
operators are laid out as ONNX Runtime's BERT optimizer expects them (``export._fuse_transformer_ops`` turns them
into Attention, SkipLayerNormalization, EmbedLayerNormalization and BiasGelu), so the fused export is the same
graph as the traced one.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from docqa.errors import DocqaError

# The files a torch-free export reads; nothing else is downloaded for it.
MODEL_FILES = (
    "config.json", "model.safetensors", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
    "tokenizer.json", "tokenizer_config.json",
)
OPSET = 17
# The additive mask of padded positions, as BERT's original code has it; the fused Attention uses the same value.
MASK_FILL = -10000.0


class UnsupportedModel(Exception):
    """This model is not one the torch-free export builds; the message says what it has instead, to follow
    "this one has" (for example "hidden_act 'gelu_new'")."""


@dataclass(frozen=True)
class BertModel:
    """What a BERT sentence encoder is, read from its folder: sizes, sequence limits and float32 weights."""

    folder: Path
    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    layer_norm_eps: float
    max_seq_length: int
    pad_id: int
    weights: dict[str, np.ndarray] = field(repr=False)  # by their names in the checkpoint, without "bert."

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads


def read_bert(folder: Path) -> BertModel:
    """The model in ``folder``, or ``UnsupportedModel`` naming the first thing the torch-free export cannot build."""
    config = _read_json(folder, "config.json")
    if config.get("model_type") != "bert":
        raise UnsupportedModel(f"model_type {config.get('model_type')!r}")
    if config.get("hidden_act") != "gelu":
        raise UnsupportedModel(f"hidden_act {config.get('hidden_act')!r}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel(f"position_embedding_type {config['position_embedding_type']!r}")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise UnsupportedModel("decoder settings (is_decoder, add_cross_attention)")
    _check_sentence_transformer(folder)
    if not (folder / "model.safetensors").is_file():
        raise UnsupportedModel("no model.safetensors")
    if not (folder / "tokenizer.json").is_file():
        raise UnsupportedModel("no tokenizer.json")
    try:
        hidden, heads, layers = config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]
        intermediate, eps = config["intermediate_size"], config["layer_norm_eps"]
        positions = config["max_position_embeddings"]
        type_vocab, vocab = config["type_vocab_size"], config["vocab_size"]
    except KeyError as missing:
        raise UnsupportedModel(f"no {missing} in config.json") from None
    if hidden % heads:
        raise UnsupportedModel(f"hidden_size {hidden}, not a multiple of num_attention_heads {heads}")
    weights = _bert_weights(read_safetensors(folder / "model.safetensors"))
    expected = _weight_shapes(hidden, intermediate, layers, positions, type_vocab, vocab)
    for name, shape in expected.items():
        if name not in weights:
            raise UnsupportedModel(f"no {name} in model.safetensors")
        if weights[name].shape != shape:
            raise UnsupportedModel(f"{name} of shape {weights[name].shape}, where config.json gives {shape}")
    return BertModel(
        folder=folder, hidden_size=hidden, num_heads=heads, num_layers=layers, intermediate_size=intermediate,
        layer_norm_eps=float(eps), max_seq_length=_max_seq_length(folder, positions),
        pad_id=_pad_id(folder, config), weights={name: weights[name] for name in expected},
    )


def _read_json(folder: Path, name: str) -> dict:
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedModel(f"no {name}") from None
    except (OSError, ValueError) as error:
        raise DocqaError(f"cannot read {path}: {error}".splitlines()[0]) from None


def _optional_json(folder: Path, name: str) -> dict:
    try:
        return _read_json(folder, name)
    except UnsupportedModel:
        return {}


def _check_sentence_transformer(folder: Path) -> None:
    """A Transformer, mean pooling and optionally Normalize: the sentence-transformers pipeline this graph is.

    The graph always L2-normalises (docqa's embedders return unit rows, so that inner product is cosine), which a
    Normalize module does too and which does not change a model without one as far as cosine is concerned. A folder
    without modules.json is a plain transformer, which sentence-transformers loads with mean pooling: so does this.
    """
    if not (folder / "modules.json").is_file():
        return
    modules = _read_json(folder, "modules.json")
    kinds = [module.get("type", "").rsplit(".", 1)[-1] for module in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModel(f"the sentence-transformers modules {kinds}")
    if modules[0].get("path", "") != "":
        raise UnsupportedModel(f"its transformer in the subfolder {modules[0]['path']!r}")
    pooling = _read_json(folder, f"{modules[1]['path']}/config.json")
    if _pooling_modes(pooling) != ["mean"]:
        raise UnsupportedModel(f"pooling {_pooling_modes(pooling)}")
    if _optional_json(folder, "sentence_bert_config.json").get("do_lower_case"):
        raise UnsupportedModel("do_lower_case set in sentence_bert_config.json")


def _pooling_modes(pooling: dict) -> list[str]:
    """The pooling modes of a Pooling config, in its current form (pooling_mode) or the older one (flags)."""
    if "pooling_mode" in pooling:
        mode = pooling["pooling_mode"]
        return [mode] if isinstance(mode, str) else list(mode)
    flags = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
             "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
             "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
    return [mode for key, mode in flags.items() if pooling.get(key)] or ["mean"]


def _max_seq_length(folder: Path, positions: int) -> int:
    """What sentence-transformers truncates to: its own setting, else the tokenizer's limit, within the positions."""
    configured = _optional_json(folder, "sentence_bert_config.json").get("max_seq_length")
    if configured:
        return min(int(configured), positions)
    return min(int(_optional_json(folder, "tokenizer_config.json").get("model_max_length", positions)), positions)


def _pad_id(folder: Path, config: dict) -> int:
    padding = _read_json(folder, "tokenizer.json").get("padding") or {}
    return int(padding.get("pad_id", config.get("pad_token_id") or 0))


def _weight_shapes(hidden: int, intermediate: int, layers: int, positions: int, type_vocab: int,
                   vocab: int) -> dict[str, tuple[int, ...]]:
    shapes = {
        "embeddings.word_embeddings.weight": (vocab, hidden),
        "embeddings.position_embeddings.weight": (positions, hidden),
        "embeddings.token_type_embeddings.weight": (type_vocab, hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
    }
    for layer in range(layers):
        prefix = f"encoder.layer.{layer}."
        for name, rows, columns in [
            ("attention.self.query", hidden, hidden), ("attention.self.key", hidden, hidden),
            ("attention.self.value", hidden, hidden), ("attention.output.dense", hidden, hidden),
            ("intermediate.dense", intermediate, hidden), ("output.dense", hidden, intermediate),
        ]:
            shapes[f"{prefix}{name}.weight"] = (rows, columns)  # torch's Linear: [out, in]
            shapes[f"{prefix}{name}.bias"] = (rows,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{prefix}{norm}.weight"] = (hidden,)
            shapes[f"{prefix}{norm}.bias"] = (hidden,)
    return shapes


def _bert_weights(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Checkpoints saved from a task model name the encoder's weights "bert.…"; the plain model does not."""
    if "bert.embeddings.word_embeddings.weight" in tensors:
        return {name.removeprefix("bert."): value for name, value in tensors.items() if name.startswith("bert.")}
    return tensors


_FLOATS = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The floating-point tensors of a safetensors file, as float32 arrays by name.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's dtype, shape and byte
    range, then the raw little-endian data. It is read here rather than with ``safetensors.numpy.load_file``, which
    refuses bfloat16 tensors (numpy has no bfloat16 type) as many published checkpoints are stored; this is the
    whole format, and docqa needs no package for it. Integer tensors (position-id buffers) are left out."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    damaged = DocqaError(f"{path} is not a valid safetensors file; download the model again")
    if data.size < 8:
        raise damaged
    (length,) = struct.unpack("<Q", data[:8].tobytes())
    if 8 + length > data.size:
        raise damaged
    try:
        header = json.loads(data[8 : 8 + length].tobytes())
    except ValueError:
        raise damaged from None
    start = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry.get("dtype") not in (*_FLOATS, "BF16"):
            continue
        shape, (begin, end) = tuple(entry["shape"]), entry["data_offsets"]
        width = 2 if entry["dtype"] == "BF16" else np.dtype(_FLOATS[entry["dtype"]]).itemsize
        if not 0 <= begin <= end <= data.size - start or end - begin != math.prod(shape) * width:
            raise damaged
        raw = data[start + begin : start + end]
        if entry["dtype"] == "BF16":  # the upper half of a float32
            values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = raw.view(_FLOATS[entry["dtype"]]).astype(np.float32)
        tensors[name] = values.reshape(shape)
    return tensors


def write_bert_onnx(model: BertModel, target: Path) -> None:
    """The unfused graph with the weights as initializers, in ``target`` and its external data file beside it."""
    import onnx

    graph = _GraphBuilder()
    hidden = _embeddings(graph, model)
    attention_bias = _attention_bias(graph)
    for layer in range(model.num_layers):
        hidden = _encoder_layer(graph, model, f"encoder.layer.{layer}.", hidden, attention_bias)
    _mean_pool_and_normalise(graph, hidden)
    batch_by_sequence = ["batch", "sequence"]
    inputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, batch_by_sequence)
              for name in ("input_ids", "attention_mask", "token_type_ids")]
    output = onnx.helper.make_tensor_value_info("sentence_embedding", onnx.TensorProto.FLOAT,
                                                ["batch", model.hidden_size])
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "bert_sentence_encoder", inputs, [output], graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        # The oldest format that has the opset, not the newest this onnx writes, which ONNX Runtime may not read yet.
        ir_version=onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", OPSET)]),
        # No producer_name: ONNX Runtime's optimizer warns about any but "pytorch", which this is not.
        doc_string="written from the model's files by docqa.embeddings.bert_onnx",
    )
    onnx.checker.check_model(proto, full_check=False)
    onnx.save_model(proto, str(target), save_as_external_data=True, location=f"{target.name}.data")


class _GraphBuilder:
    """Nodes and initializers, each output named after its node."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

    def constant(self, name: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, model: BertModel, name: str, transpose: bool = False) -> str:
        """A checkpoint weight; a Linear's [out, in] matrix is stored as [in, out] for MatMul."""
        value = model.weights[name]
        return self.constant(name, np.ascontiguousarray(value.T) if transpose else value)

    def op(self, op_type: str, inputs: list[str], name: str, output: str | None = None, **attributes) -> str:
        from onnx import helper

        output = output or f"{name}_output"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attributes))
        return output

    def linear(self, model: BertModel, prefix: str, hidden: str) -> str:
        """torch's Linear: MatMul by the transposed weight, then Add the bias."""
        weight = self.weight(model, f"{prefix}.weight", transpose=True)
        product = self.op("MatMul", [hidden, weight], f"{prefix}/MatMul")
        return self.op("Add", [product, self.weight(model, f"{prefix}.bias")], f"{prefix}/Add")

    def layer_norm(self, model: BertModel, prefix: str, hidden: str) -> str:
        return self.op("LayerNormalization", [hidden, self.weight(model, f"{prefix}.weight"),
                                              self.weight(model, f"{prefix}.bias")],
                       f"{prefix}/LayerNormalization", axis=-1, epsilon=model.layer_norm_eps)


def _embeddings(graph: _GraphBuilder, model: BertModel) -> str:
    """Word + token type + position embeddings, then LayerNorm. Positions are a slice of [0 .. max) as long as the
    sequence: the pattern the optimizer folds into EmbedLayerNormalization."""
    words = graph.op("Gather", [graph.weight(model, "embeddings.word_embeddings.weight"), "input_ids"],
                     "embeddings/word_embeddings")
    types = graph.op("Gather", [graph.weight(model, "embeddings.token_type_embeddings.weight"), "token_type_ids"],
                     "embeddings/token_type_embeddings")
    summed = graph.op("Add", [words, types], "embeddings/Add")
    positions_table = model.weights["embeddings.position_embeddings.weight"]
    all_positions = graph.constant("embeddings.position_ids", np.arange(len(positions_table))[None, :], np.int64)
    shape = graph.op("Shape", ["input_ids"], "embeddings/Shape")
    length = graph.op("Gather", [shape, graph.constant("one", 1, np.int64)], "embeddings/sequence_length", axis=0)
    end = graph.op("Unsqueeze", [length, graph.constant("axes_0", [0], np.int64)], "embeddings/Unsqueeze")
    starts, axes, steps = (graph.constant(name, [value], np.int64)
                           for name, value in (("starts_0", 0), ("axes_1", 1), ("steps_1", 1)))
    position_ids = graph.op("Slice", [all_positions, starts, end, axes, steps], "embeddings/position_ids")
    positions = graph.op("Gather", [graph.weight(model, "embeddings.position_embeddings.weight"), position_ids],
                         "embeddings/position_embeddings")
    summed = graph.op("Add", [summed, positions], "embeddings/Add_1")
    return graph.layer_norm(model, "embeddings.LayerNorm", summed)


def _attention_bias(graph: _GraphBuilder) -> str:
    """[batch, 1, 1, sequence]: 0 at real tokens, MASK_FILL at padding, added to every layer's attention scores."""
    mask = graph.op("Unsqueeze", ["attention_mask", graph.constant("axes_1", [1], np.int64)], "mask/Unsqueeze")
    mask = graph.op("Unsqueeze", [mask, graph.constant("axes_2", [2], np.int64)], "mask/Unsqueeze_1")
    mask = graph.op("Cast", [mask], "mask/Cast", to=1)  # float
    inverted = graph.op("Sub", [graph.constant("one_float", 1.0), mask], "mask/Sub")
    return graph.op("Mul", [inverted, graph.constant("mask_fill", MASK_FILL)], "mask/Mul")


def _encoder_layer(graph: _GraphBuilder, model: BertModel, prefix: str, hidden: str, attention_bias: str) -> str:
    heads_shape = graph.constant("heads_shape", [0, 0, model.num_heads, model.head_size], np.int64)

    def split_heads(projection: str, name: str, perm: list[int]) -> str:
        reshaped = graph.op("Reshape", [projection, heads_shape], f"{prefix}attention/{name}/Reshape")
        return graph.op("Transpose", [reshaped], f"{prefix}attention/{name}/Transpose", perm=perm)

    query = split_heads(graph.linear(model, f"{prefix}attention.self.query", hidden), "query", [0, 2, 1, 3])
    key = split_heads(graph.linear(model, f"{prefix}attention.self.key", hidden), "key", [0, 2, 3, 1])
    value = split_heads(graph.linear(model, f"{prefix}attention.self.value", hidden), "value", [0, 2, 1, 3])
    scores = graph.op("MatMul", [query, key], f"{prefix}attention/scores")
    scores = graph.op("Div", [scores, graph.constant("score_scale", math.sqrt(model.head_size))],
                      f"{prefix}attention/Div")
    scores = graph.op("Add", [scores, attention_bias], f"{prefix}attention/masked")
    weights = graph.op("Softmax", [scores], f"{prefix}attention/Softmax", axis=-1)
    context = graph.op("MatMul", [weights, value], f"{prefix}attention/context")
    context = graph.op("Transpose", [context], f"{prefix}attention/context/Transpose", perm=[0, 2, 1, 3])
    context = graph.op("Reshape", [context, graph.constant("hidden_shape", [0, 0, model.hidden_size], np.int64)],
                       f"{prefix}attention/context/Reshape")
    attended = graph.linear(model, f"{prefix}attention.output.dense", context)
    attended = graph.op("Add", [attended, hidden], f"{prefix}attention/residual")
    attended = graph.layer_norm(model, f"{prefix}attention.output.LayerNorm", attended)
    inner = graph.linear(model, f"{prefix}intermediate.dense", attended)
    # Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, in the order the optimizer recognises.
    erf = graph.op("Erf", [graph.op("Div", [inner, graph.constant("sqrt_2", math.sqrt(2.0))], f"{prefix}gelu/Div")],
                   f"{prefix}gelu/Erf")
    gelu = graph.op("Mul", [inner, graph.op("Add", [erf, graph.constant("one_float", 1.0)], f"{prefix}gelu/Add")],
                    f"{prefix}gelu/Mul")
    gelu = graph.op("Mul", [gelu, graph.constant("half", 0.5)], f"{prefix}gelu/Mul_1")
    output = graph.linear(model, f"{prefix}output.dense", gelu)
    output = graph.op("Add", [output, attended], f"{prefix}output/residual")
    return graph.layer_norm(model, f"{prefix}output.LayerNorm", output)


def _mean_pool_and_normalise(graph: _GraphBuilder, hidden: str) -> None:
    """The mean over real tokens (sentence-transformers' mean pooling), divided by its L2 norm (F.normalize)."""
    mask = graph.op("Unsqueeze", ["attention_mask", graph.constant("axes_last", [-1], np.int64)], "pool/Unsqueeze")
    mask = graph.op("Cast", [mask], "pool/Cast", to=1)
    sequence_axis = graph.constant("axes_1", [1], np.int64)
    total = graph.op("ReduceSum", [graph.op("Mul", [hidden, mask], "pool/Mul"), sequence_axis], "pool/ReduceSum",
                     keepdims=0)
    count = graph.op("ReduceSum", [mask, sequence_axis], "pool/count", keepdims=0)
    count = graph.op("Clip", [count, graph.constant("count_floor", 1e-9)], "pool/Clip")
    mean = graph.op("Div", [total, count], "pool/mean")
    norm = graph.op("ReduceL2", [mean], "normalize/ReduceL2", axes=[1], keepdims=1)
    norm = graph.op("Clip", [norm, graph.constant("norm_floor", 1e-12)], "normalize/Clip")
    graph.op("Div", [mean, norm], "normalize/Div", output="sentence_embedding")
