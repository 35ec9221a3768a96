"""Probe a checkpoint through its OWN shipped code, in a process that cannot import hf_dft_head.

Run as a script (``python remote_probe.py REQUEST.json``), never imported: :mod:`hf_dft_head.remote_code` copies
this file into a scratch folder and starts it in a fresh interpreter. It blocks the package before anything is
imported, loads the checkpoint the way a user without the plugin does (``AutoModel.from_pretrained(folder,
trust_remote_code=True)``, which executes the checkpoint's ``*.py`` files), and writes what that model computes:

* ``logits64``: ``(N, n)`` head outputs for the requested encoder features ``(N, d)``, model cast to float64;
* ``dtype_logits``: the same in the checkpoint's own dtype;
* ``text_logits``: ``(T, n)`` logits of the requested texts through the checkpoint's tokenizer and whole model;
* ``input_ids``: the token ids of those texts (padded, ``(T, L)``).

The parent compares them with the installed package's independent float64 computation. The request is JSON:
``{"checkpoint", "features", "texts", "max_length", "output"}``; a summary JSON goes to ``output + ".json"``.
"""

import inspect
import json
import sys

# The check is about the code a user without the plugin runs: the package must not be importable here.
sys.modules["hf_dft_head"] = None

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402


def main(request_path: str) -> None:
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    model = AutoModel.from_pretrained(request["checkpoint"], trust_remote_code=True).eval()
    model_class = type(model)
    dtype = next(model.parameters()).dtype
    features = torch.from_numpy(np.load(request["features"]))
    # A standard tokenizer needs no code; False also keeps AutoTokenizer from asking on a terminal. The model's config
    # decides nothing here (the tokenizer class comes from tokenizer_config.json); without it AutoTokenizer reads
    # config.json again as a plain PretrainedConfig, whose repr (logged with an f-string) prints every label: 36 s at
    # 1M labels.
    tokenizer = AutoTokenizer.from_pretrained(request["checkpoint"], config=model.config, trust_remote_code=False)
    batch = tokenizer(
        request["texts"], padding=True, truncation=True, max_length=request["max_length"], return_tensors="pt"
    )
    with torch.no_grad():
        text_logits = model(**batch).logits.double().numpy()
        dtype_logits = model(encoder_features=features.to(dtype)).logits.double().numpy()
        logits64 = model.double()(encoder_features=features).logits.numpy()
    np.savez(
        request["output"],
        logits64=logits64,
        dtype_logits=dtype_logits,
        text_logits=text_logits,
        input_ids=batch["input_ids"].numpy(),
    )
    try:
        import hf_dft_head  # noqa: F401

        package_blocked = False
    except ImportError:
        package_blocked = True
    summary = {
        "class": model_class.__name__,
        "module": model_class.__module__,
        "module_file": inspect.getfile(model_class),
        "dtype": str(dtype).replace("torch.", ""),
        "package_blocked": package_blocked,
    }
    with open(request["output"] + ".json", "w", encoding="utf-8") as handle:
        json.dump(summary, handle)


if __name__ == "__main__":
    main(sys.argv[1])
