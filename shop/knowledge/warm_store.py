"""Embed the configured shops' knowledge bases into the on-disk vector store
(shop/knowledge/meaning.py), so that the ingress replicas that start next read the vectors
instead of computing them (~1,900 phrasings for the two demo shops: ~35 s on 2 threads once,
then about a second). Idempotent: only texts not yet stored are embedded. Run by
scripts/setup.sh, and by the image build (deploy/kubernetes/Dockerfile) for the shipped shops.

    .venv/bin/python -m shop.knowledge.warm_store [--config configs/local-cpu.yaml] [--root .]
                                                  [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import yaml

from shop.config import ShopsConfig
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.meaning import Embedder, default_store_path
from shop.text import COMMERCE_WORDS, Tokenizer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local-cpu.yaml",
                        help="a Serve config; its application's args.shops are read")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="what the shops' knowledge_base paths are relative to (the "
                             "project's root, as the ingress resolves them)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="warm_store: %(message)s")
    logging.getLogger("cs_assistant").setLevel(logging.INFO)  # "embedding N texts" is progress
    import bm25s  # noqa: F401 - it sets its logger to DEBUG on import: quiet it after that

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    # Read with the shop layer's own schema (shop/ imports nothing of the serving side).
    serve_config = yaml.safe_load((args.root / args.config).read_text(encoding="utf-8"))
    found = [app["args"]["shops"] for app in serve_config.get("applications", [])
             if (app.get("args") or {}).get("shops")]
    shops = ShopsConfig.model_validate(found[0]) if found else None
    if shops is None or not shops.meaning.enabled:
        print("warm_store: no shops with retrieval by meaning in", args.config)
        return 0
    embedder = Embedder(args.threads, 0, default_store_path())
    tokenizer = Tokenizer(COMMERCE_WORDS)
    for shop in shops.catalog:
        started = time.perf_counter()
        folder = Path(shop.knowledge_base)
        knowledge = KnowledgeBase(folder if folder.is_absolute() else args.root / folder,
                                  tokenizer, embedder)
        print(f"warm_store: {shop.id}: {len(knowledge.entries)} entries ready in "
              f"{time.perf_counter() - started:.1f} s ({default_store_path()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
