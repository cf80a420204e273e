"""The generator's answers through OpenVINO GenAI, Intel's inference runtime, on the CPU.

Why: one answer at a time (what a customer waits for) 0.74 s of generation against 1.02 s with
CTranslate2 and the same answers (demo champion, 48 golden questions side by side, 2-core AMD EPYC;
benchmarks/answer_engines.py has the whole comparison), and a batch of 16 golden questions at once
11.4 s for 116 answers against 81 s one by one: the pipeline schedules a batch's prompts together
(continuous batching) and reads a system turn the prompts share once (prefix caching). Inference
runs in float32 (`INFERENCE_PRECISION_HINT`), its key/value cache too (`KV_CACHE_PRECISION`; the
CPU plugin's default, u8, changed answers): bf16, where the CPU has it, is faster but changed
answers; int8 weights changed 9 of 116 answers and lost key facts.

The model is exported here rather than with optimum-intel, whose releases pin transformers below
the one this project runs: the generator is traced once with its key/value cache as inputs and
outputs (`torch` → OpenVINO), and the cache is then moved into the model's state, which is the form
OpenVINO GenAI's pipeline runs (inputs input_ids, attention_mask, position_ids, beam_idx). The
tokenizer is converted with openvino-tokenizers. ~10 s for SmolLM2-135M on 2 cores, once per
generator (components/models/engine_cache.py).

    >>> engine = OvGenerator(convert(lambda scratch: base_folder, cache / key, convert_folder), tokenizer)  # doctest: +SKIP
    >>> engine.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=48)  # doctest: +SKIP
    ['Hello! How can I help you today?']
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai
import torch
from openvino import opset13
from openvino._offline_transformations import apply_make_stateful_transformation
from openvino_tokenizers import convert_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from components.prompting import render_chat

VERSION = openvino_genai.__version__  # part of a conversion's name in the cache
INPUTS = ("input_ids", "attention_mask", "position_ids")


class _FlatCache(torch.nn.Module):
    """The causal LM with its key/value cache as plain tensors, one key and one value per layer, in
    and out: what tracing can follow."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache(config=self.model.config)
        # set, not update(): update's first concatenation onto an empty tensor does not trace
        for i, layer in enumerate(cache.layers):
            layer.dtype, layer.device = past[0].dtype, past[0].device
            layer.keys, layer.values, layer.is_initialized = past[2 * i], past[2 * i + 1], True
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        return (out.logits, *(t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)))


def _kv_shape(config) -> tuple[int, int, int]:
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, heads, head_dim


def export_model(folder: str):
    """The decoder-only transformers model in `folder` as a stateful OpenVINO model."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
    layers, heads, head_dim = _kv_shape(model.config)
    past, new = 3, 2  # example lengths: the traced graph is the general case (a cache, several new tokens, a mask)
    example = (torch.ones(1, new, dtype=torch.long), torch.ones(1, past + new, dtype=torch.long),
               torch.arange(past, past + new).unsqueeze(0), *(torch.zeros(1, heads, past, head_dim) for _ in range(2 * layers)))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about branches on shapes: the general branch is taken
        graph = ov.convert_model(_FlatCache(model), example_input=example)
    cache_in = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    cache_out = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(graph.inputs, [*INPUTS, *cache_in], strict=True):
        port.get_tensor().set_names({name})
        port.get_node().set_partial_shape(ov.PartialShape([-1, -1] if name in INPUTS else [-1, heads, -1, head_dim]))
    for port, name in zip(graph.outputs, ["logits", *cache_out], strict=True):
        port.get_tensor().set_names({name})
    graph.validate_nodes_and_infer_types()
    _reorder_by_beam(graph, cache_in)
    apply_make_stateful_transformation(graph, dict(zip(cache_in, cache_out, strict=True)))
    _empty_initial_state(graph, heads, head_dim)
    return graph


def _reorder_by_beam(graph, cache_in: list[str]) -> None:
    """The pipeline's beam_idx input: the cache, once state, is gathered by it along the batch."""
    beam_idx = opset13.parameter(name="beam_idx", dtype=ov.Type.i32, shape=ov.PartialShape([-1]))
    beam_idx.output(0).get_tensor().add_names({"beam_idx"})
    graph.add_parameters([beam_idx])
    for name in cache_in:
        port = graph.input(name)
        consumers = port.get_target_inputs()
        gathered = opset13.gather(port, beam_idx, opset13.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(gathered.output(0))
    graph.validate_nodes_and_infer_types()


def _empty_initial_state(graph, heads: int, head_dim: int) -> None:
    """A new conversation's cache: zero tokens long, as many rows as the input's batch."""
    batch = opset13.gather(opset13.shape_of(graph.input("input_ids"), output_type="i64"),
                           opset13.constant([0]), opset13.constant(0))
    dims = [opset13.constant(np.array([d], dtype=np.int64)) for d in (heads, 0, head_dim)]
    for op in graph.get_ops():
        if op.get_type_name() == "ReadValue":
            shape = opset13.concat([batch, *dims], axis=0)
            op.set_arguments([opset13.broadcast(opset13.constant(0.0, dtype=op.get_output_element_type(0)), shape)])
    graph.validate_nodes_and_infer_types()


def convert_folder(folder: str, out: str) -> None:
    """A transformers model folder (weights, tokenizer) in the form OpenVINO GenAI loads."""
    Path(out).mkdir(parents=True)
    try:
        graph = export_model(folder)
    except Exception as error:  # the tracer's and converter's errors say what failed, not what to do
        raise RuntimeError(f"could not convert the generator in {folder} for OpenVINO ({type(error).__name__}: "
                           f"{error}); set serve.inference_engine: ctranslate2 (or transformers) in params.yaml "
                           "to answer without it") from error
    ov.save_model(graph, f"{out}/openvino_model.xml", compress_to_fp16=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # Prompts are rendered by the chat template already: no special tokens added, as the other engines do
    encoder, decoder = convert_tokenizer(tokenizer, with_detokenizer=True, add_special_tokens=False)
    ov.save_model(encoder, f"{out}/openvino_tokenizer.xml")
    ov.save_model(decoder, f"{out}/openvino_detokenizer.xml")


class OvGenerator:
    """Greedy answers for chat conversations, as components/models/generator.py gives them."""

    def __init__(self, model_dir: Path, tokenizer, precision: str = "f32") -> None:
        # precision other than f32: for benchmarks/answer_engines.py's comparison. The key/value cache
        # in it too: the CPU plugin keeps it in u8 by default, which changed answers (a LoRA-tuned tiny
        # Llama's, tests/model/test_engine_answers.py: 5 of 5)
        self.model_dir, self.tokenizer = Path(model_dir), tokenizer
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.enable_prefix_caching = True  # a system turn the prompts share is read once
        self.pipeline = openvino_genai.LLMPipeline(str(model_dir), "CPU", scheduler_config=scheduler,
                                                   INFERENCE_PRECISION_HINT=precision, KV_CACHE_PRECISION=precision,
                                                   INFERENCE_NUM_THREADS=torch.get_num_threads())

    def generate(self, conversations: list[list[dict]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
        config = openvino_genai.GenerationConfig()
        config.max_new_tokens, config.do_sample, config.apply_chat_template = max_new_tokens, False, False
        config.eos_token_id = self.tokenizer.eos_token_id
        prompts = [render_chat(self.tokenizer, conversation) for conversation in conversations]
        answers: list[str] = []
        for start in range(0, len(prompts), batch_size):
            answers += [text.strip() for text in self.pipeline.generate(prompts[start:start + batch_size], config).texts]
        return answers
