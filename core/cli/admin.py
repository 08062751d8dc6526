"""``wiredraw plugins``, ``new-module``, ``keys`` and ``tokens``: what is loaded, new modules, secrets."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiredraw.core.cli.common import about, add_data_dir
from wiredraw.core.plugins import ModuleSet
from wiredraw.core.server.credentials import ProbeSecrets, Tokens

if TYPE_CHECKING:
    from wiredraw.core.cli.common import Subcommands


def cmd_plugins(args: argparse.Namespace, modules: ModuleSet) -> int:
    """List each loaded module: id, slug, version, message types and key templates."""
    items = []
    for m in modules:
        d = m.spec.as_dict()
        d["plugin"] = m.plugin
        items.append(d)
    if args.json:
        json.dump({"modules": items, "broken": [{"plugin": n, "error": e} for n, e in modules.broken]},
                  sys.stdout, indent=2)
        print()
        return 0
    if not items:
        print("no modules loaded")
    for d in items:
        print(f"{d['id']:>5}  {d['slug']}  {d['version']}  (plugin {d['plugin']})")
        print(f"       {d['doc']}")
        for name, msg in d["messages"].items():
            print(f"       message {name}: {', '.join(msg['fields'])}")
        for k in d["keys"]:
            ttl = f", ttl {k['ttl']} s" if k["ttl"] else ""
            print(f"       key {k['template']} ({k['type']}{ttl})")
    for name, error in modules.broken:
        print(f"broken plugin {name}: {error}")
    return 0


def cmd_new_module(args: argparse.Namespace, modules: ModuleSet) -> int:
    """Write a new module's distribution: pyproject (entry point in wiredraw.modules), the module's package (source,
    messages, key schema, view translation, README, sample configuration), its message vectors and tests (the
    conformance suite), green at once.
    """

    from wiredraw.core.cli.scaffold import DEVELOPMENT_ID, create, names_for

    slug = args.slug
    loaded = modules.get(slug)
    if loaded is not None:
        raise ValueError(f"slug {slug!r} is already taken by a loaded module (id {loaded.spec.id}, plugin "
                         f"{loaded.plugin!r}); pick another")
    directory = Path(args.dir) if args.dir is not None else Path(names_for(slug)["dist"])
    made = create(slug, directory, args.id)
    print(f"wrote module {slug!r} (id {made.module_id}), distribution {made.distribution}, in {directory}/:")
    for rel in made.files:
        print(f"  {rel}")
    print("next:")
    print(f"  cd {directory} && python3 -m pip install -e . && pytest")
    print(f"  wiredraw plugins        # lists {slug}")
    if made.module_id == DEVELOPMENT_ID:
        print(f"  ({DEVELOPMENT_ID} is the development id: pick a private one, 1000-65535, before you ship)")
    return 0


@dataclass(frozen=True)
class SecretKind:
    """What ``wiredraw keys`` and ``wiredraw tokens`` differ by."""

    help: str
    store: Any  # ProbeSecrets or Tokens: add, remove, list
    what: str  # the argument naming one
    removed: str  # said on stderr once one is removed; {} is its name
    columns: tuple[str, ...]  # of each `list` line


SECRETS = {
    "keys": SecretKind("manage probe keys", ProbeSecrets, "probe_id", "removed the key of probe {}",
                       ("probe_id", "created")),
    "tokens": SecretKind("manage viewer and collector tokens", Tokens, "name", "removed token {}",
                         ("name", "role", "created")),
}


def cmd_secrets(args: argparse.Namespace, _modules: Any) -> int:
    """``keys`` or ``tokens``: ``add`` prints the new secret alone on stdout, ``remove``, ``list`` (no secrets)."""
    kind = SECRETS[args.command]
    store = kind.store(args.data_dir)
    if args.action == "add":
        role = (args.role,) if hasattr(args, "role") else ()
        print(store.add(getattr(args, kind.what), *role, replace=args.replace))
    elif args.action == "remove":
        store.remove(getattr(args, kind.what))
        print(kind.removed.format(getattr(args, kind.what)), file=sys.stderr)
    else:
        for item in store.list():
            print("\t".join(f"{item[c]}" for c in kind.columns))
    return 0


def add_plugins_parser(sub: Subcommands) -> None:
    p = sub.add_parser("plugins", help="list the loaded modules",
                       description=about(cmd_plugins))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)


def add_new_module_parser(sub: Subcommands) -> None:
    p = sub.add_parser("new-module", help="scaffold a new module as its own installable distribution",
                       description=about(cmd_new_module))
    p.add_argument("slug", help="the module's slug, lower_snake_case (e.g. my_source)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="where to write it (default: ./wiredraw-<slug with dashes>); must be new or empty")
    p.add_argument("--id", type=int, default=999,
                   help="module id: 999 (development, the default) or a private one, 1000-65535")
    p.set_defaults(func=cmd_new_module)


def add_secret_parsers(sub: Subcommands) -> None:
    """``wiredraw keys`` and ``wiredraw tokens``: the same three actions on each."""
    for name, kind in SECRETS.items():
        helptext, what = kind.help, kind.what
        p = sub.add_parser(name, help=helptext, description=f"{helptext.capitalize()}, stored in the data "
                           "directory with mode 0600. `add` prints the new secret alone on stdout.")
        asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        a = asub.add_parser("add", help="make a new one and print it")
        a.add_argument(what)
        if name == "tokens":
            a.add_argument("--role", choices=("viewer", "collector"), required=True,
                           help="viewer: watch graphs; collector: POST logs to /logs")
        a.add_argument("--replace", action="store_true", help="replace an existing one")
        add_data_dir(a)
        r = asub.add_parser("remove", help="revoke one")
        r.add_argument(what)
        add_data_dir(r)
        ls = asub.add_parser("list", help="list names (never the secrets)")
        add_data_dir(ls)
        p.set_defaults(func=cmd_secrets)
