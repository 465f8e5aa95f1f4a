"""Experiment configs: shared defaults, then a profile, then the experiment, then command-line overrides.

`experiments/defaults.yaml` holds every shared key; `experiments/profiles/<profile>.yaml` sets the profile's
numbers; the shared blocks an experiment lists in `blocks:` (`experiments/blocks/<block>.yaml`, e.g. what every
ablation shares, or what every paper-scale training stage shares) come next; `experiments/<name>.yaml` states only
what differs for that experiment. The blocks' and then the experiment's `profile_overrides.<profile>` sections are
merged after every base, so a block's paper numbers override an experiment's tiny ones; `a.b=value` overrides from
the command line come last, in struct mode, so an unknown key or a value of the wrong type is rejected with a
one-line message. Then value ranges, the inputs that must exist and the folders a run writes into are checked
(`config_checks.py`), all before anything is written.
"""

import difflib
import functools
import inspect
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from .config_checks import check_locations, check_ranges
from .errors import UserError

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"
RESERVED_FILES = {"defaults"}
BLOCKS_DIR = "blocks"
RUNNER_KEYS = ("experiment", "profile")


def list_experiments(root: Path = EXPERIMENTS_DIR) -> dict[str, str]:
    """Every experiment name with its one-line description."""
    found = {}
    for path in sorted(root.glob("*.yaml")):
        if path.stem in RESERVED_FILES:
            continue
        data = yaml.safe_load(path.read_text()) or {}
        found[path.stem] = str(data.get("description", "")).strip()
    return found


def list_profiles(root: Path = EXPERIMENTS_DIR) -> list[str]:
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml"))


def load_config(
    experiment: str,
    profile: str = "tiny",
    overrides: list[str] | tuple[str, ...] = (),
    root: Path = EXPERIMENTS_DIR,
    check_paths: bool = True,
) -> DictConfig:
    """Compose, override and validate an experiment's config; raises `UserError` on any bad input. `check_paths`
    False (for --print-config and configs composed inside another run) skips what looks at the disk."""
    experiments = list_experiments(root)
    if experiment not in experiments:
        raise UserError(f"unknown experiment '{experiment}'; valid experiments: {', '.join(experiments)}")
    profiles = list_profiles(root)
    if profile not in profiles:
        raise UserError(f"unknown profile '{profile}'; valid profiles: {', '.join(profiles)}")
    experiment_cfg = OmegaConf.load(root / f"{experiment}.yaml")
    bases, profile_sections = [], []
    for block in experiment_cfg.pop("blocks", None) or []:
        path = root / BLOCKS_DIR / f"{block}.yaml"
        if not path.is_file():
            valid = sorted(p.stem for p in (root / BLOCKS_DIR).glob("*.yaml"))
            raise UserError(f"{experiment}.yaml: unknown block {block!r}; valid blocks: {', '.join(valid)}")
        base, section = split_profile_overrides(OmegaConf.load(path), path.name, profile, profiles)
        bases.append(base)
        profile_sections.append(section)
    base, section = split_profile_overrides(experiment_cfg, f"{experiment}.yaml", profile, profiles)
    cfg = OmegaConf.merge(
        OmegaConf.load(root / "defaults.yaml"),
        OmegaConf.load(root / "profiles" / f"{profile}.yaml"),
        *bases,
        base,
        *profile_sections,
        section,
    )
    cfg.experiment, cfg.profile = experiment, profile
    OmegaConf.set_struct(cfg, True)
    for override in overrides:
        apply_override(cfg, override)
    check_resolves(cfg)
    check_ranges(cfg)
    if check_paths:
        if profile == "paper":
            check_required_paths(cfg, root)
        check_locations(cfg)
    return cfg


def check_resolves(cfg: DictConfig) -> None:
    """Every interpolation resolves (a `${...}` naming a missing key fails here, not where it is read)."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as error:
        raise UserError(f"config does not resolve: {str(error).splitlines()[0]}") from None


def split_profile_overrides(layer: DictConfig, name: str, profile: str,
                            profiles: list[str]) -> tuple[DictConfig, DictConfig]:
    """A config layer without its `profile_overrides`, and the section for `profile` (empty if none)."""
    per_profile = layer.pop("profile_overrides", None) or {}
    unknown_profiles = set(per_profile) - set(profiles)
    if unknown_profiles:
        raise UserError(f"{name}: profile_overrides names unknown profiles {sorted(unknown_profiles)}")
    return layer, OmegaConf.create(per_profile.get(profile, {}))


def parse_override(text: str) -> tuple[str, object]:
    """Split `a.b=value`; the value is read as YAML, so `3`, `0.5`, `true`, `null` and `[1, 2]` are typed."""
    key, sep, raw = text.partition("=")
    if not sep or not key or key.startswith("-"):
        raise UserError(f"cannot read '{text}': overrides look like key=value (for example trainer.max_steps=2)")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as error:
        if raw.lstrip().startswith(("[", "{")):
            raise UserError(f"cannot read the value of {key.strip()}: {raw!r} is not a YAML list or mapping "
                            f"({str(error).splitlines()[0]}); close every bracket and quote items that hold "
                            """brackets: ablation.extra_proxy_overrides='["train.data.strides=[1, 2]"]'""") from None
        value = raw
    return key.strip(), value


def apply_override(cfg: DictConfig, text: str) -> None:
    key, value = parse_override(text)
    if key in RUNNER_KEYS:
        raise UserError(f"'{key}=' may be given once, before other overrides")
    set_key(cfg, key, value, text.partition("=")[2])


@functools.cache
def free_form_sections(root: Path = EXPERIMENTS_DIR) -> set[str]:
    """Dotted keys `defaults.yaml` leaves as empty mappings (such as `train.unet.options`): their keys are free."""
    found = set()

    def walk(node: dict, prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, dict):
                if value:
                    walk(value, f"{prefix}{name}.")
                else:
                    found.add(f"{prefix}{name}")

    walk(yaml.safe_load((root / "defaults.yaml").read_text()), "")
    return found


def apply_block(cfg: DictConfig, block: dict, prefix: str = "") -> None:
    """Set every key of a nested mapping as `a.b=value` overrides would, so an unknown key or a value of the wrong
    type fails the same way. A mapping over a section with keys sets them one by one; over a free-form section
    (empty in `defaults.yaml`, such as `train.unet.options`) it adds its keys to what the section holds, so two
    blocks can each set some."""
    for name, value in block.items():
        key = f"{prefix}{name}"
        node = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, dict) and isinstance(node, DictConfig) and key in free_form_sections():
            with open_dict(node):
                for option, setting in value.items():
                    node[option] = setting
        elif isinstance(value, dict) and isinstance(node, DictConfig) and len(node):
            apply_block(cfg, value, f"{key}.")
        else:
            set_key(cfg, key, value, str(value))


def set_key(cfg: DictConfig, key: str, value, raw: str) -> None:
    """Set one existing key (or a Lightning `Trainer` argument under `trainer.`, or any key of a free-form section
    such as `train.unet.options`), keeping its type."""
    parent_key, _, leaf = key.rpartition(".")
    # Keys are listed rather than tested with `in`, which is False for a key whose value is ??? (unset).
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in list(parent.keys()):
        free = parent_key == "trainer" and leaf in trainer_arguments() or parent_key in free_form_sections()
        if isinstance(parent, DictConfig) and free:
            with open_dict(parent):
                parent[leaf] = value
            return
        raise UserError(unknown_key_message(cfg, key))
    current = parent._get_node(leaf)
    if isinstance(current, DictConfig) and not isinstance(value, dict):
        raise UserError(f"'{key}' is a section; set one of its keys instead, for example {first_leaf(cfg, key)}=…")
    parent[leaf] = checked_value(key, current, value, raw)


def checked_value(key: str, node, value, raw: str):
    """Keep the type of the default: ints stay ints, floats accept ints, bools take true/false only."""
    if value is None or node._is_missing() or node._is_interpolation():
        return value
    old = node._value()
    if old is None or isinstance(old, str):
        return value
    if isinstance(old, bool):
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} expects true or false, got '{raw}'")
    if isinstance(old, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key} expects an integer, got '{raw}'")
    if isinstance(old, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 2e-3 (no dot) as a string; Python reads it as a number
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key} expects a number, got '{raw}'")
    return value


def all_keys(node, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node:
            full = f"{prefix}{k}"
            keys.append(full)
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                keys.extend(all_keys(child, full + "."))
    return keys


def first_leaf(cfg: DictConfig, key: str) -> str:
    section = OmegaConf.select(cfg, key)
    return f"{key}.{next(iter(section.keys()))}" if len(section) else key


def unknown_key_message(cfg: DictConfig, key: str) -> str:
    candidates = all_keys(cfg)
    if key.startswith("trainer."):
        candidates += [f"trainer.{name}" for name in trainer_arguments()]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        leaf = key.rpartition(".")[2]
        close = [c for c in candidates if c.rpartition(".")[2] == leaf][:1]
    hint = f"; did you mean '{close[0]}'?" if close else "; see the valid keys with --print-config"
    return f"unknown key '{key}' for experiment {cfg.experiment}{hint}"


def trainer_arguments() -> set[str]:
    """The keyword arguments of Lightning's `Trainer`, which `trainer.*` keys pass through to."""
    from lightning import Trainer

    return {name for name in inspect.signature(Trainer.__init__).parameters if name != "self"}


def required_paths(cfg: DictConfig, root: Path = EXPERIMENTS_DIR) -> list[tuple[str, object, str | None]]:
    """`(key, value, where)` for every path `requires_paths` asks for now; `where` is None for the config's own keys,
    else the key of the override list that sets them.

    An entry is a key; `{path: KEY, when: CONDITION}`, a path needed only while CONDITION holds (a key that is true,
    or `KEY=VALUE`, e.g. `curation.flow.backend=raft`); or `{experiment: KEY, overrides: LIST, unless: FLAG, only:
    KEYS}`, the paths of the experiment named at KEY composed with the overrides at LIST (a config this one runs, e.g.
    an ablation's curation or its proxies), skipped while the optional FLAG is set (e.g. a given clip table), limited
    to the optional KEYS (the proxies' weights; the ablation hands them their data and init itself). A key the outer
    config requires itself is checked there only (the ablation hands its data to its curation).
    """
    found, nested = [], []
    for entry in cfg.get("requires_paths", []):
        if not isinstance(entry, str) and "experiment" in entry:
            nested.append(entry)
        elif isinstance(entry, str) or condition_holds(cfg, str(entry.when)):
            key = entry if isinstance(entry, str) else entry.path
            found.append((key, OmegaConf.select(cfg, key, throw_on_missing=False, default=None), None))
    own = {key for key, _, _ in found}
    for entry in nested:
        if entry.get("unless") and OmegaConf.select(cfg, entry.unless, default=None):
            continue
        inner = load_config(str(OmegaConf.select(cfg, entry.experiment)), cfg.profile,
                            list(OmegaConf.select(cfg, entry.overrides)), root, check_paths=False)
        only = set(entry.get("only") or [])
        found += [(key, value, entry.overrides) for key, value, _ in required_paths(inner, root)
                  if key not in own and (not only or key in only)]
    return found


def condition_holds(cfg: DictConfig, condition: str) -> bool:
    """`KEY` (its value is true) or `KEY=VALUE` (its value, as text, is VALUE)."""
    key, sep, expected = condition.partition("=")
    value = OmegaConf.select(cfg, key.strip(), default=None)
    return str(value) == expected.strip() if sep else bool(value)


def check_required_paths(cfg: DictConfig, root: Path = EXPERIMENTS_DIR) -> None:
    """In the paper profile every weight or data path an experiment reads must exist; report all at once."""
    problems, lists = [], []
    for key, value, where in required_paths(cfg, root):
        name = key if where is None else f"{where}: {key}"
        if where is not None and where not in lists:
            lists.append(where)
        if value in (None, "", "???"):
            problems.append(f"{name} (not set)")
        elif not Path(str(value)).expanduser().exists():
            problems.append(f"{name}={value} (not found)")
    if problems:
        how = "".join(f", those under {where} as {where}=[KEY=PATH, ...]" for where in lists)
        raise UserError(
            f"profile=paper needs real weights and data; missing {len(problems)}: {'; '.join(problems)}"
            f" — set each with KEY=PATH{how}"
        )
