"""Embed the configured shops' knowledge bases into the on-disk vector store
(shop/knowledge/meaning.py), so that the ingress replicas that start next read the vectors
instead of computing them (~1,900 phrasings for the two demo shops: ~35 s on 2 threads once,
then about a second). Idempotent: only texts not yet stored are embedded. Run by
scripts/setup.sh, and by the image build (deploy/kubernetes/Dockerfile) for the shipped shops.

    .venv/bin/python -m shop.knowledge.warm_store [--config configs/local-cpu.yaml] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from configs.schema import APP_NAME, PROJECT_ROOT, app_config_from_serve_config, load_serve_config
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.meaning import Embedder, default_store_path
from shop.text import COMMERCE_WORDS, Tokenizer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local-cpu.yaml")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="warm_store: %(message)s")
    logging.getLogger("cs_assistant").setLevel(logging.INFO)  # "embedding N texts" is progress
    import bm25s  # noqa: F401 - it sets its logger to DEBUG on import: quiet it after that

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    config = app_config_from_serve_config(load_serve_config(PROJECT_ROOT / args.config), APP_NAME)
    if config.shops is None or not config.shops.meaning.enabled:
        print("warm_store: no shops with retrieval by meaning in", args.config)
        return 0
    embedder = Embedder(args.threads, 0, default_store_path())
    tokenizer = Tokenizer(COMMERCE_WORDS)
    for shop in config.shops.catalog:
        started = time.perf_counter()
        folder = Path(shop.knowledge_base)
        knowledge = KnowledgeBase(folder if folder.is_absolute() else PROJECT_ROOT / folder,
                                  tokenizer, embedder)
        print(f"warm_store: {shop.id}: {len(knowledge.entries)} entries ready in "
              f"{time.perf_counter() - started:.1f} s ({default_store_path()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
