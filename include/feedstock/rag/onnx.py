"""The local embedding model on ONNX Runtime: exported once from the installed weights, optionally int8.

``rag.embedding.runtime: onnx`` runs the same sentence-transformers model without torch at query and embed time:

- **Export** (no download): ``transformers.AutoModel`` loads the model folder's own weights and
  ``torch.onnx.export`` writes the transformer; ONNX Runtime's BERT optimizer fuses layer norms and GELU
  (attention too where its pattern matches, which it does not on transformers 5's eager graph);
  ``quantize: int8`` then applies ONNX Runtime's dynamic int8 quantization to the weights.
- **Cache:** ``<models dir>/<model>-<key>/model.onnx``, where the key hashes the weights, the tokenizer, the
  quantization and :data:`EXPORT_VERSION`, so new weights or a new export recipe never reuse an old file. The
  models dir is ``$FEEDSTOCK_MODELS`` or ``~/.cache/feedstock/models``. Files are written to a temporary name and
  renamed, so concurrent first uses (mapped tasks) each see a whole file.
- **Encode** exactly as sentence-transformers does: the model's own fast tokenizer with its ``max_seq_length``
  truncation, batches sorted by length, the pooling its ``1_Pooling/config.json`` names (mean or cls), then unit
  normalization.
- **Check:** an export is accepted only when its vectors match torch's on :data:`PROBES` (the lowest cosine is
  recorded in ``export.json``): at least :data:`FP32_MIN_COSINE` for fp32, :data:`INT8_MIN_COSINE` for int8.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from feedstock.errors import EmbeddingError
from feedstock.rag.embedders import _normalize

log = logging.getLogger(__name__)

EXPORT_VERSION = "2"
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.97
PROBES = [
    "How do I reset my password?",
    "The dishwasher leaves white spots on glasses after a cycle.",
    "Refunds are issued to the original payment method within 10 business days.",
    "Customer question (billing): why was I charged twice this month?",
    "Kubernetes pods restart in a loop with CrashLoopBackOff after the upgrade.",
    "x",
    "Retention policy > Backups\n\nNightly snapshots are kept for 35 days and weekly ones for a year. " * 6,
]


def models_dir() -> Path:
    return Path(os.environ.get("FEEDSTOCK_MODELS") or Path.home() / ".cache" / "feedstock" / "models")


def _digest(folder: Path, quantize: str) -> str:
    sha = hashlib.sha256(f"{EXPORT_VERSION}:{quantize}".encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"):
        if (folder / name).exists():
            with open(folder / name, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    sha.update(block)
    return sha.hexdigest()[:16]


def _settings(folder: Path) -> tuple[int, str]:
    """``(max_seq_length, pooling)`` from the sentence-transformers files of the folder."""
    max_len = 512
    if (folder / "sentence_bert_config.json").exists():
        max_len = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length", 512)
    pooling = "mean"
    if (folder / "1_Pooling" / "config.json").exists():
        config = json.loads((folder / "1_Pooling" / "config.json").read_text())
        modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
        pooling = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(
            modes[0] if len(modes) == 1 else "", ""
        )
        if not pooling:
            raise EmbeddingError(f"onnx runtime supports mean or cls pooling, not {modes} ({folder})")
    return max_len, pooling


class OnnxModel:
    """A sentence-transformers folder on ONNX Runtime; ``encode(texts)`` returns unit float32 vectors."""

    def __init__(self, folder: str | Path, path: str | Path, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder, self.path = Path(folder), Path(path)
        self.max_len, self.pooling = _settings(self.folder)
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.enable_padding()

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")  # long first, as sentence-transformers
        parts = []
        for start in range(0, len(texts), batch_size):
            parts.append(self._batch([texts[i] for i in order[start : start + batch_size]]))
        if not parts:
            return np.zeros((0, 0), np.float32)
        vectors = np.empty((len(texts), parts[0].shape[1]), np.float32)
        vectors[order] = np.vstack(parts)
        return vectors

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feed)[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalize(pooled.astype(np.float32))


def load(folder: str | Path, quantize: str = "none", threads: int | None = None) -> OnnxModel:
    """The model folder on ONNX Runtime, exported on first use."""
    return OnnxModel(folder, ensure_export(Path(folder), quantize), threads)


def ensure_export(folder: Path, quantize: str) -> Path:
    """The cached ONNX file of ``folder`` at ``quantize``, exported and checked first if it is not there yet."""
    target = models_dir() / f"{folder.name}-{_digest(folder, quantize)}"
    path = target / "model.onnx"
    if path.exists():
        return path
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as work:
        fp32 = Path(work) / "model.onnx"
        _export(folder, fp32)
        final = fp32
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            final = Path(work) / "model.int8.onnx"
            # Fused operators carry no inferred type; their outputs are float.
            quantize_dynamic(
                str(fp32),
                str(final),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"DefaultTensorType": 1},
            )
        cosine = _check(folder, final, quantize)
        os.replace(final, path)
        report = {"source": str(folder), "quantize": quantize, "min_cosine_vs_torch": cosine}
        (target / "export.json").write_text(json.dumps(report, indent=2))
    log.info("exported %s to ONNX (%s): %s, lowest cosine to torch %.5f", folder.name, quantize, path, cosine)
    return path


def _export(folder: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    # Eager attention: a plain additive mask, which ONNX Runtime runs 1.5x faster than the SDPA export's
    # Where/IsNaN guards.
    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):  # keyword arguments: the positional order of forward() varies by version
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}
    raw = out.with_suffix(".raw.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes that are constant for this model
        torch.onnx.export(
            Hidden(),
            (sample, sample, torch.zeros_like(sample)),
            str(raw),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    config = model.config
    try:  # fused layer norms and GELU: the same maths in fewer, faster kernels
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(
            str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
        optimized.save_model_to_file(str(out))
    except Exception as exc:  # noqa: BLE001 - an architecture the optimizer does not know runs unfused
        log.warning("ONNX Runtime's optimizer skipped %s: %s", folder.name, exc)
        os.replace(raw, out)


def _check(folder: Path, path: Path, quantize: str) -> float:
    """The lowest cosine between this export's vectors and torch's on the probes; raises below the floor."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), device="cpu").encode(PROBES, normalize_embeddings=True)
    cosine = float(np.min(np.sum(reference * OnnxModel(folder, path).encode(PROBES), axis=1)))
    floor = INT8_MIN_COSINE if quantize == "int8" else FP32_MIN_COSINE
    if cosine < floor:
        raise EmbeddingError(
            f"ONNX export of {folder.name} ({quantize}) differs from torch: lowest cosine {cosine:.4f} < {floor}"
        )
    return cosine
