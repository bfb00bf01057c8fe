"""What the stage keys hold: everything that changes an output (a local base folder's files, a hub revision's
commit, the backend that really generates) and nothing that does not (`arch`, used only by the dry-run plan)."""
from __future__ import annotations

import shutil

from conftest import ROOT, SAMPLE
from dialsum.config import load_config


def _ctx(tmp_path, edit=None):
    from dialsum.engine.run_folder import open_run

    cfg = load_config(ROOT / "configs" / "competition.yaml", {"output_dir": str(tmp_path / "runs"),
                                                               "data": {"dir": str(SAMPLE)}})
    if edit:
        cfg = edit(cfg)
    return open_run(cfg, lock=False)


def _with_model(cfg, i, **update):
    models = list(cfg.models)
    models[i] = models[i].model_copy(update=update)
    return cfg.model_copy(update={"models": models})


def test_arch_is_not_keyed_but_the_hub_commit_is(tmp_path, monkeypatch):
    from dialsum.config import ArchSpec
    from dialsum.stages.generate import plan as generate_stage
    from dialsum.stages.train import plan as train_stage

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ctx = _ctx(tmp_path)
    m = ctx.cfg.models[0]
    key = train_stage(ctx, m).key
    gen_key = generate_stage(ctx, m).key
    other = m.model_copy(update={"arch": ArchSpec(vocab_size=1, hidden_size=1, num_layers=1)})
    ctx2 = _ctx(tmp_path)
    assert train_stage(ctx2, other).key == key and generate_stage(ctx2, other).key == gen_key
    # the same hub id once the cache resolves `main` to a commit: a different base, so a different key
    ref = tmp_path / "hub" / f"models--{m.path.replace('/', '--')}" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40)
    assert train_stage(_ctx(tmp_path), m).key != key
    ref.write_text("b" * 40)
    keys = {train_stage(_ctx(tmp_path), m).key}
    ref.write_text("a" * 40)
    assert train_stage(_ctx(tmp_path), m).key not in keys


def test_a_local_base_folders_files_are_keyed(tmp_path, tiny_model_dir):
    from dialsum.stages.train import plan as train_stage

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    edit = lambda cfg: _with_model(cfg, 0, path=str(base))  # noqa: E731
    key = train_stage(ctx := _ctx(tmp_path, edit), ctx.cfg.models[0]).key
    assert train_stage(ctx := _ctx(tmp_path, edit), ctx.cfg.models[0]).key == key  # stable
    cfg_file = base / "generation_config.json"
    cfg_file.write_text(cfg_file.read_text() + "\n")  # any byte of the base changes the key
    assert train_stage(ctx := _ctx(tmp_path, edit), ctx.cfg.models[0]).key != key


def test_auto_backend_is_resolved_before_keying(tmp_path):
    import importlib.util

    from dialsum.stages.generate import plan as generate_stage

    have_vllm = importlib.util.find_spec("vllm") is not None
    keys = {}
    for backend in ("auto", "vllm", "hf"):
        ctx = _ctx(tmp_path, lambda cfg: cfg.model_copy(update={"generate": cfg.generate.model_copy(
            update={"backend": backend})}))
        st = generate_stage(ctx, ctx.cfg.models[0])
        keys[backend] = st.key
        assert st.inputs["backend"] == ("vllm" if backend == "auto" and have_vllm else
                                        "hf" if backend == "auto" else backend)
    assert keys["auto"] == keys["vllm" if have_vllm else "hf"] and keys["vllm"] != keys["hf"]


def test_generate_quantization_is_keyed_and_none_keeps_the_old_keys(tmp_path):
    """`generate.quantization` changes a generate stage's key (and, at 4 bits, `auto` resolves to hf); at `none` the
    key holds no quantization entry, so caches from before the option existed stay valid."""
    from dialsum.stages.generate import plan as generate_stage

    keys, inputs = {}, {}
    for q in ("none", "8bit", "4bit"):
        ctx = _ctx(tmp_path, lambda cfg: cfg.model_copy(update={"generate": cfg.generate.model_copy(
            update={"backend": "auto", "quantization": q})}))
        st = generate_stage(ctx, ctx.cfg.models[0])
        keys[q], inputs[q] = st.key, st.inputs
    assert len(set(keys.values())) == 3 and "quantization" not in inputs["none"]
    assert inputs["4bit"]["quantization"] == "4bit" and inputs["4bit"]["backend"] == "hf"


def test_vllm_at_4_bits_is_refused_in_one_line():
    from conftest import run_cli

    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml", "--set", "generate.backend=vllm",
                "--set", "generate.quantization=4bit")
    assert r.returncode == 2 and "vLLM has no 4-bit loading" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_shipped_configs_keep_their_stage_keys(tmp_path):
    """Every stage key of the shipped run configs equals the checked-in one (tests/data/stage_keys.json, written
    before the stage graph moved into dialsum.stages): a refactor must not make users recompute their caches."""
    import json

    from stage_key_pins import CONFIGS, PINS, current_keys

    pins = json.loads(PINS.read_text())
    for config in CONFIGS:
        assert current_keys(config, tmp_path / "hub") == pins[config], config
