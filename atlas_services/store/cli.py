"""`atlas config ...` and `atlas module ...`: the versioned store's commands."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_services.errors import EXIT_FAILED, EXIT_OK, AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role, read_role
from atlas_services.store import config as config_mod
from atlas_services.store import modules as modules_mod
from atlas_services.store import subvol, tree

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


CONFIG_EPILOG = """\
The working tree is STORE/work (atlas.json + templates/); edit it, then commit.
exit codes: 0 ok, 1 a check failed (e.g. a service's checker refused the config),
            2 usage error or refused input (nothing was changed).
examples:
  atlas config commit -m "raise the upload size limit"
  atlas config log
  atlas config show 12
  atlas config diff 11 12
  atlas config diff 12            # generation 12 against the working tree
  atlas config rollback 11        # a new generation equal to 11
  atlas config apply --check      # render and validate only
  atlas config apply
"""

MODULE_EPILOG = """\
exit codes: 0 ok, 1 an operation failed, 2 usage error or refused input (nothing changed).
examples:
  atlas module install atlas_services-0.2.0.atlas
  atlas module list
  atlas module select atlas_services 0.2.0
  atlas module rollback atlas_services
  atlas module remove atlas_services 0.1.0
"""


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _store(args: argparse.Namespace) -> config_mod.ConfigStore:
    return config_mod.ConfigStore(args.layout.config_store)


def _not_btrfs_skip(args: argparse.Namespace, path: Path, what: str) -> bool:
    if args.skip_if_not_btrfs and not subvol.is_btrfs(path):
        logger.warning("%s is not on btrfs: the %s is not available on this system", path, what)
        return True
    return False


# ---------------------------------------------------------------- config


def config_init(args: argparse.Namespace) -> int:
    store = _store(args)
    if _not_btrfs_skip(args, store.root.parent, "configuration store"):
        return 0
    gen = store.init(args.default_tree or args.layout.default_config_tree)
    if gen is None:
        print(f"configuration store at {store.root} already exists")
    else:
        print(f"configuration store created at {store.root}: generation {gen.number}")
    return 0


def _dataset_mounted_as_primary(layout: Layout) -> bool:
    return read_role(layout.role_file).role is Role.PRIMARY and layout.dataset_meta.is_dir()


def _copy_to_dataset(store: config_mod.ConfigStore, layout: Layout) -> int:
    """On the primary, put the new generation(s) on the data set too. The commit stands
    either way; a failed copy is reported (exit 1) and made by the next commit."""
    if not _dataset_mounted_as_primary(layout):
        return EXIT_OK
    try:
        config_mod.copy_missing_to_dataset(store, layout.data_root)
    except (AtlasError, OSError) as err:
        logger.error("committed, but copying to the data set failed: %s — the next commit retries it", err)
        return EXIT_FAILED
    return EXIT_OK


def config_commit(args: argparse.Namespace) -> int:
    store = _store(args)
    gen = store.commit(args.message)
    if args.json:
        _print_json(gen.to_json())
    else:
        print(f"generation {gen.number} committed: {gen.message}")
    return _copy_to_dataset(store, args.layout)


def config_log(args: argparse.Namespace) -> int:
    store = _store(args)
    store.require()
    entries = store.log(args.limit)
    if args.json:
        _print_json([g.to_json() for g in entries])
        return 0
    for gen in entries:
        extra = f" (rollback to {gen.rollback_of})" if gen.rollback_of else ""
        print(f"{gen.number:>5}  {gen.time}  {gen.who:<10}  {gen.message}{extra}")
    if not entries:
        print("no generations yet")
    return 0


def config_show(args: argparse.Namespace) -> int:
    store = _store(args)
    store.require()
    gen = store.info(args.generation)
    root = store.path(args.generation)
    if args.file:
        target = (root / args.file).resolve()
        if not target.is_relative_to(root.resolve()) or not target.is_file():
            raise Refused(f"generation {args.generation} has no file {args.file}")
        print(target.read_text(errors="replace"), end="")
        return 0
    files = sorted(p for p, e in tree.scan(root, [config_mod.META_FILE]).items() if e.kind != "dir")
    if args.json:
        _print_json({**gen.to_json(), "files": files})
        return 0
    print(f"generation {gen.number}\n  time     {gen.time}\n  who      {gen.who}\n"
          f"  parent   {gen.parent or '-'}\n  message  {gen.message}\n  files:")
    for path in files:
        print(f"    {path}")
    return 0


def config_diff(args: argparse.Namespace) -> int:
    store = _store(args)
    store.require()
    old, new = args.old, args.new
    changes = store.diff(old, new)
    if args.json:
        _print_json({"from": old, "to": new if new is not None else "work",
                     "changes": [c.to_json() for c in changes]})
        return 0
    new_label = f"{new}" if new is not None else "work"
    for change in changes:
        print(tree.unified(store.path(old), store.tree_of(new), change, str(old), new_label), end="")
    if not changes:
        print(f"no differences between {old} and {new_label}")
    return 0


def config_rollback(args: argparse.Namespace) -> int:
    store = _store(args)
    gen = store.rollback(args.generation, discard=args.discard)
    if gen is None:
        print(f"the newest generation already equals generation {args.generation}; nothing to do")
        return 0
    print(f"generation {gen.number} committed: {gen.message}; run 'atlas config apply' to use it")
    return _copy_to_dataset(store, args.layout)


def config_apply(args: argparse.Namespace) -> int:
    # jinja2 and the checkers load only for apply: every other verb starts faster.
    from atlas_services.store import apply as apply_mod
    result = apply_mod.apply(_store(args), args.generation, layout=args.layout,
                             check_only=args.check)
    if args.json:
        _print_json(result.to_json())
        return 1 if result.unconfirmed else 0
    if result.recovered:
        print(f"  {result.recovered}")
    verb = "would change" if args.check else "changed"
    print(f"generation {result.generation}: checked {', '.join(result.checked) or 'no services'}")
    for path in result.changed:
        print(f"  {verb} /{path}")
    for path in result.removed:
        print(f"  {'would remove' if args.check else 'removed'} /{path}")
    if not result.changed and not result.removed:
        print("  nothing to change")
    if result.services:
        print(f"  {'would reload' if args.check else 'reloaded'}: {', '.join(result.services)}")
    if result.unconfirmed:
        raise AtlasError(f"the files are installed, but not every service took them: "
                         f"{'; '.join(result.unconfirmed)}",
                         "look at the service's journal, fix, and apply again")
    return 0


def _register_config(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "config", help="versioned configuration: commit, log, diff, rollback, apply",
        description="The configuration store: every change is a numbered, read-only generation.",
        epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)

    p = verbs.add_parser("init", help="create the store from the image's defaults (idempotent)")
    p.add_argument("--default-tree", type=Path, default=None, metavar="DIR",
                   help=f"default: {Layout().default_config_tree}")
    p.add_argument("--skip-if-not-btrfs", action="store_true",
                   help="exit 0 with a warning when the store's place is not on btrfs")
    p.set_defaults(func=config_init)

    p = verbs.add_parser("commit", help="snapshot the working tree as a new generation")
    p.add_argument("-m", "--message", required=True, help="what changed and why")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=config_commit)

    p = verbs.add_parser("log", help="list generations, newest first")
    p.add_argument("-n", "--limit", type=int, default=None, metavar="N", help="show the newest N only")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=config_log)

    p = verbs.add_parser("show", help="a generation's metadata and files (or one file)")
    p.add_argument("generation", type=int, metavar="GEN")
    p.add_argument("--file", metavar="PATH", help="print this file of the generation")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=config_show)

    p = verbs.add_parser("diff", help="changes from GEN to GEN2 (default: the working tree)")
    p.add_argument("old", type=int, metavar="GEN")
    p.add_argument("new", type=int, nargs="?", default=None, metavar="GEN2")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=config_diff)

    p = verbs.add_parser("rollback", help="commit a new generation equal to GEN")
    p.add_argument("generation", type=int, metavar="GEN")
    p.add_argument("--discard", action="store_true", help="drop uncommitted changes in the working tree")
    p.set_defaults(func=config_rollback)

    p = verbs.add_parser("apply", help="render, validate and install a generation, reload what changed")
    p.add_argument("--generation", type=int, default=None, metavar="GEN", help="default: the newest")
    p.add_argument("--check", action="store_true", help="render and validate only; change nothing")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=config_apply)


# ---------------------------------------------------------------- module


def _modules(args: argparse.Namespace) -> modules_mod.ModuleStore:
    return modules_mod.ModuleStore(args.layout.module_store, args.layout.formats_file)


def module_install(args: argparse.Namespace) -> int:
    manifest = _modules(args).install(args.bundle, args.signature, args.layout.vendor_key)
    print(f"installed {manifest.name} {manifest.version}")
    if args.select:
        _modules(args).select(manifest.name, manifest.version)
        print(f"selected {manifest.name} {manifest.version}")
    return 0


def module_list(args: argparse.Namespace) -> int:
    rows = _modules(args).installed()
    if args.json:
        _print_json([r.to_json() for r in rows])
        return 0
    for row in rows:
        mark = "selected" if row.selected else "previous" if row.previous else ""
        print(f"{row.module:<20} {row.version:<16} {mark}")
    if not rows:
        print("no modules installed")
    return 0


def module_select(args: argparse.Namespace) -> int:
    changed = _modules(args).select(args.module, args.version)
    print(f"{args.module} {args.version} {'selected' if changed else 'was already selected'}")
    return 0


def module_rollback(args: argparse.Namespace) -> int:
    version = _modules(args).rollback(args.module)
    print(f"{args.module} {version} selected again")
    return 0


def module_remove(args: argparse.Namespace) -> int:
    _modules(args).remove(args.module, args.version)
    print(f"removed {args.module} {args.version}")
    return 0


def module_seed(args: argparse.Namespace) -> int:
    if _not_btrfs_skip(args, args.layout.module_store.parent, "module store"):
        return 0
    installed = _modules(args).seed(args.bundles or args.layout.image_bundles, args.layout.vendor_key)
    print(f"installed {', '.join(installed)}" if installed else "module store already seeded")
    return 0


def _register_module(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "module", help="installed module versions: install, list, select, rollback, remove",
        description="The module store: signed module versions side by side, one selected.",
        epilog=MODULE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)

    p = verbs.add_parser("install", help="check a signed bundle and install it beside the others")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--signature", type=Path, default=None, metavar="SIG",
                   help="the detached signature (default: BUNDLE.sig)")
    p.add_argument("--select", action="store_true", help="select it once installed")
    p.set_defaults(func=module_install)

    p = verbs.add_parser("list", help="installed versions, with the selected and previous ones")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=module_list)

    p = verbs.add_parser("select", help="switch a module to an installed version")
    p.add_argument("module", metavar="MODULE")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=module_select)

    p = verbs.add_parser("rollback", help="select the previous version again")
    p.add_argument("module", metavar="MODULE")
    p.set_defaults(func=module_rollback)

    p = verbs.add_parser("remove", help="delete an installed version (not the selected one)")
    p.add_argument("module", metavar="MODULE")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=module_remove)

    p = verbs.add_parser("seed", help="install the image's own bundles (first boot; idempotent)")
    p.add_argument("--bundles", type=Path, default=None, metavar="DIR",
                   help=f"default: {Layout().image_bundles}")
    p.add_argument("--skip-if-not-btrfs", action="store_true",
                   help="exit 0 with a warning when the store's place is not on btrfs")
    p.set_defaults(func=module_seed)


def register(commands: Subparsers) -> None:
    _register_config(commands)
    _register_module(commands)
