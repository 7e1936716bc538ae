"""Manage the API-keys file (docs/api.md "API keys").

    scripts/api_keys.py new --file keys.yaml --id apparel-widget --shops demo-apparel \
        --role widget --rpm 60 --tpm 40000 --concurrent 4
    scripts/api_keys.py list --file keys.yaml
    scripts/api_keys.py revoke --file keys.yaml --id apparel-widget

`new` adds the key's hash to the file (created if missing) and prints the key once, on stdout:
it is not stored anywhere, so hand it to the shop now. Running ingress replicas pick the change
up within `access.reload_check_s`. The file is written atomically (a temporary file renamed over
it), so a replica never reads half a file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.access.api_keys import ALL_SHOPS, KeysFile, key_entry, new_key  # noqa: E402


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    KeysFile.model_validate(raw)  # refuse to edit a file the servers would refuse
    return list(raw.get("keys", []))


def write(path: Path, entries: list[dict]) -> None:
    KeysFile.model_validate({"keys": entries})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8",
                                     prefix=f".{path.name}.") as out:
        yaml.safe_dump({"keys": entries}, out, sort_keys=False, allow_unicode=True)
    os.chmod(out.name, 0o600)
    os.replace(out.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("new", help="add a key and print it once")
    create.add_argument("--file", type=Path, required=True)
    create.add_argument("--id", required=True, help="shown in logs and metrics")
    create.add_argument("--shops", required=True,
                        help=f"comma-separated shop ids, or '{ALL_SHOPS}' for every shop")
    create.add_argument("--role", choices=("widget", "backend"), required=True,
                        help="widget: public client (no system messages); backend: the "
                        "shop's own server")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--concurrent", type=int, help="concurrent requests")
    for name, text in (("list", "show ids, shops, roles and limits"),
                       ("revoke", "remove a key by id")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--file", type=Path, required=True)
        if name == "revoke":
            command.add_argument("--id", required=True)
    args = parser.parse_args(argv)

    entries = read(args.file)
    if args.command == "list":
        for entry in entries:
            print(f"{entry['id']}: role={entry['role']} shops={entry['shops']} "
                  f"limits={entry.get('limits', {})}")
        return 0
    if args.command == "revoke":
        kept = [e for e in entries if e["id"] != args.id]
        if len(kept) == len(entries):
            print(f"no key with id {args.id!r}", file=sys.stderr)
            return 1
        write(args.file, kept)
        print(f"revoked {args.id}", file=sys.stderr)
        return 0
    if any(e["id"] == args.id for e in entries):
        print(f"a key with id {args.id!r} exists; revoke it first", file=sys.stderr)
        return 1
    key = new_key()
    limits = {name: value for name, value in (("requests_per_minute", args.rpm),
                                              ("tokens_per_minute", args.tpm),
                                              ("concurrent_requests", args.concurrent))
              if value is not None}
    shops = ALL_SHOPS if args.shops == ALL_SHOPS else args.shops.split(",")
    write(args.file, entries + [key_entry(key, args.id, shops, args.role, limits)])
    print(f"added {args.id} to {args.file}; the key (shown once):", file=sys.stderr)
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
