"""The tensor interfaces Llama3-70B-PPO-Chat is served with, recognised from a model's metadata and config.

Only inputs the model declares are sent, with the datatype and shape it declares; a required input
this client cannot fill is reported when the model is first used, naming the input.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from webapp.llm.errors import ModelNotReadyError
from webapp.llm.params import GenerationParams


class UnsupportedModelError(ModelNotReadyError):
    """The model is served, but its inputs match none of the known LLM interfaces."""


class Dialect(enum.Enum):
    NEMO_23_10 = "nemo-23.10"  # NeMo FW 23.10 deploy_triton.py: every sampling input required
    NEMO = "nemo"  # NeMo >= 2.0 deploy_triton.py
    TRTLLM = "trtllm-ensemble"  # TensorRT-LLM backend `ensemble`
    VLLM = "vllm"  # vLLM backend

    @property
    def cumulative(self) -> bool:
        """NeMo streams the whole completion so far; the others stream deltas."""
        return self in (Dialect.NEMO_23_10, Dialect.NEMO)

    @property
    def output_name(self) -> str:
        return "outputs" if self.cumulative else "text_output"


_NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    dims: tuple[int, ...]  # without the batch dimension
    optional: bool


@dataclass(frozen=True, slots=True)
class RequestTensor:
    name: str
    datatype: str
    array: np.ndarray


# How a generation ended, where a server reports it when asked: a BOOL input switches an output on. The vLLM
# backend (r24.12+) has all three; the TRT-LLM ensemble (recent tensorrt_llm) the two counts; the local model
# server all three. Counts are per response: a stream's total is their sum.
USAGE_OUTPUTS: dict[str, str] = {
    "return_finish_reason": "finish_reason",
    "return_num_input_tokens": "num_input_tokens",
    "return_num_output_tokens": "num_output_tokens",
}


@dataclass(frozen=True, slots=True)
class ModelInterface:
    model_name: str
    dialect: Dialect
    inputs: Mapping[str, TensorSpec]
    max_batch_size: int
    decoupled: bool
    outputs: frozenset[str] = frozenset()

    @property
    def output_name(self) -> str:
        return self.dialect.output_name

    @property
    def usage_switches(self) -> dict[str, str]:
        """The usage outputs this model can send (switch input -> output), all of which we ask for."""
        switches = {
            flag: output
            for flag, output in USAGE_OUTPUTS.items()
            if flag in self.inputs and self.inputs[flag].datatype == "BOOL" and output in self.outputs
        }
        if self.may_echo_prompt:
            # TRT-LLM counts an echoed prompt among the output tokens: the reply's own count is unknown then.
            switches.pop("return_num_output_tokens", None)
        return switches

    @property
    def output_names(self) -> list[str]:
        """The outputs to request: the text, then the usage outputs."""
        return [self.output_name, *self.usage_switches.values()]

    @property
    def may_echo_prompt(self) -> bool:
        # TRT-LLM and vLLM repeat the prompt unless they can be told not to.
        return not self.dialect.cumulative and "exclude_input_in_output" not in self.inputs

    def request(
        self, prompt: str, params: GenerationParams, stop: Sequence[str], *, streaming: bool
    ) -> list[RequestTensor]:
        """The input tensors for one generation, restricted to the inputs this model declares."""
        stop = [s for s in dict.fromkeys(stop) if s]
        values = _dialect_values(self.dialect, prompt, params, stop, streaming=streaming)
        for name, spec in self.inputs.items():
            if spec.datatype == "BOOL" and name.startswith("output_") and name not in values:
                values[name] = [False]  # e.g. NeMo 2.x output_generation_logits: required, and we want none
        for flag in self.usage_switches:
            values[flag] = [True]
        declared = [name for name in values if name in self.inputs]
        return [self._tensor(self.inputs[name], values[name]) for name in declared]

    def _tensor(self, spec: TensorSpec, values: list[Any]) -> RequestTensor:
        variable = [i for i, dim in enumerate(spec.dims) if dim < 0]
        if not variable:
            values = values[:1]  # a fixed single slot, e.g. NeMo's one stop word per batch row
        shape = [1 if dim < 0 else dim for dim in spec.dims] or [1]
        if variable:
            shape[variable[-1]] = len(values)
        if int(np.prod(shape)) != len(values):
            raise UnsupportedModelError(
                f"Model {self.model_name!r} declares input {spec.name!r} with dims {list(spec.dims)}, "
                f"which cannot hold {len(values)} value(s); this client does not support that interface."
            )
        if spec.datatype == "BYTES":
            items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
            array = np.array(items, dtype=np.object_)
        else:
            array = np.array(values, dtype=_NUMPY_DTYPES[spec.datatype])
        if self.max_batch_size > 0:
            shape = [1, *shape]
        return RequestTensor(spec.name, spec.datatype, array.reshape(shape))


def _dialect_values(
    dialect: Dialect, prompt: str, params: GenerationParams, stop: list[str], *, streaming: bool
) -> dict[str, list[Any]]:
    sampling: dict[str, list[Any]] = {
        "top_k": [params.top_k],
        "top_p": [params.top_p],
        "temperature": [params.temperature],
    }
    if dialect is Dialect.NEMO_23_10:
        return {"prompts": [prompt], "max_output_token": [params.max_new_tokens], **sampling}
    if dialect is Dialect.NEMO:
        values: dict[str, list[Any]] = {
            "prompts": [prompt],
            "max_output_len": [params.max_new_tokens],
            **sampling,
        }
        if stop:
            values["stop_words_list"] = [_broadest(stop)]  # one per batch row; the rest are cut client-side
        return values
    if dialect is Dialect.TRTLLM:
        values = {
            "text_input": [prompt],
            "max_tokens": [params.max_new_tokens],
            "stream": [streaming],
            "exclude_input_in_output": [True],
            **sampling,
        }
        if stop:
            values["stop_words"] = stop
        return values
    sampling_parameters = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or -1,  # vLLM disables top-k with -1, not 0
        "max_tokens": params.max_new_tokens,
        "stop": stop,
    }
    return {
        "text_input": [prompt],
        "stream": [streaming],
        "sampling_parameters": [json.dumps(sampling_parameters)],
        "exclude_input_in_output": [True],
    }


def _broadest(stop: list[str]) -> str:
    """The first stop string that contains no other: "<extra_id_1>" also ends "...\n<extra_id_1>"."""
    return next(s for s in stop if not any(t != s and t in s for t in stop))


_FILLABLE: dict[Dialect, frozenset[str]] = {
    Dialect.NEMO_23_10: frozenset({"prompts", "max_output_token", "top_k", "top_p", "temperature"}),
    Dialect.NEMO: frozenset({"prompts", "max_output_len", "top_k", "top_p", "temperature", "stop_words_list"}),
    Dialect.TRTLLM: frozenset(
        {"text_input", "max_tokens", "stream", "exclude_input_in_output", "top_k", "top_p", "temperature", "stop_words"}
    ),
    Dialect.VLLM: frozenset({"text_input", "stream", "sampling_parameters", "exclude_input_in_output"}),
}


def _pick_dialect(model_name: str, names: set[str]) -> Dialect:
    if "prompts" in names:
        return Dialect.NEMO_23_10 if "max_output_token" in names else Dialect.NEMO
    if "text_input" in names:
        if "sampling_parameters" in names:
            return Dialect.VLLM
        if "max_tokens" in names:
            return Dialect.TRTLLM
    raise UnsupportedModelError(
        f"Model {model_name!r} has inputs {sorted(names)}, which match no known LLM interface "
        "(NeMo `prompts`, TRT-LLM `text_input`+`max_tokens`, vLLM `text_input`+`sampling_parameters`). "
        "Check GUARDCHAT_TRITON_MODEL names the chat model."
    )


def detect_interface(model_name: str, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInterface:
    """Recognise the model's interface from Triton model metadata and model config (JSON forms)."""
    config = config.get("config", config)  # gRPC wraps the config; HTTP does not
    max_batch_size = int(config.get("max_batch_size", 0) or 0)
    optional = {i["name"]: bool(i.get("optional", False)) for i in config.get("input", [])}
    inputs: dict[str, TensorSpec] = {}
    for item in metadata.get("inputs", []):
        shape = tuple(int(d) for d in item.get("shape", []))
        dims = shape[1:] if max_batch_size > 0 else shape
        if item["datatype"] not in _NUMPY_DTYPES:
            raise UnsupportedModelError(
                f"Model {model_name!r} input {item['name']!r} has unsupported datatype {item['datatype']}"
            )
        name = item["name"]
        inputs[name] = TensorSpec(name, item["datatype"], dims, optional.get(name, False))
    dialect = _pick_dialect(model_name, set(inputs))
    unfillable = sorted(
        spec.name
        for spec in inputs.values()
        if not spec.optional
        and spec.name not in _FILLABLE[dialect]
        and not (spec.datatype == "BOOL" and spec.name.startswith("output_"))
    )
    if unfillable:
        raise UnsupportedModelError(
            f"Model {model_name!r} ({dialect.value} interface) requires inputs {unfillable} "
            "that this client does not know how to fill."
        )
    outputs = {o["name"] for o in metadata.get("outputs", [])}
    if dialect.output_name not in outputs:
        raise UnsupportedModelError(
            f"Model {model_name!r} looks like the {dialect.value} interface but has no "
            f"{dialect.output_name!r} output (outputs: {sorted(outputs)})."
        )
    policy = config.get("model_transaction_policy", {}) or {}
    return ModelInterface(
        model_name=model_name,
        dialect=dialect,
        inputs=inputs,
        max_batch_size=max_batch_size,
        decoupled=bool(policy.get("decoupled", False)),
        outputs=frozenset(outputs),
    )
