"""`dialsum preview`: one training row as the model is trained on it, or truncation shares per CSV."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.commands.runs import config_of
from dialsum.config import load_model_config
from dialsum.stages.plan import select_models
from dialsum.errors import DialsumError
from dialsum.io.data import load_dialogues


def preview(args) -> int:
    from dialsum.models.preview import (competition_files, example_view, format_view, tokenizer_for, truncation,
                                        truncation_problems)

    cfg = config_of(args)
    models = []
    for name in args.model or [m.name for m in cfg.models]:
        if name.endswith((".yaml", ".yml")) or Path(name).is_file():
            models.append(load_model_config(Path(name)))
        else:
            models += select_models(cfg, [name])
    data_dir = Path(args.data_dir) if args.data_dir else Path(cfg.data.dir)
    train_csv = data_dir / "train.csv" if (data_dir / "train.csv").is_file() else Path(cfg.data.dir) / "train.csv"
    train = load_dialogues(train_csv, with_summary=True)
    texts = [d.dialogue for d in train] + [d.summary for d in train]
    out = []
    for m in models:
        try:
            mt = tokenizer_for(m, Path(args.tokenizer) if args.tokenizer else None, texts)
        except DialsumError as e:
            raise DialsumError(f"{e}{_facts_hint(m) if not args.tokenizer else ''}") from None
        if args.lengths:
            rows = truncation(mt, m, competition_files(data_dir))
            out += rows
            if not args.json:
                if mt.kind == "stand-in":
                    print(f"{m.name}: counted with a STAND-IN tokenizer ({mt.source}): not the checkpoint's own "
                          f"token counts; give --tokenizer a folder with the real tokenizer files for those")
                for r in rows:
                    summ = "-" if r["summary_truncated"] is None else f"{r['summary_truncated']:.2%}"
                    print(f"{m.name:<20} {r['split']:<10} {r['rows']:>6} rows  dialogues > {r['max_input_tokens']}: "
                          f"{r['dialogue_truncated']:.2%}  references > {r['max_new_tokens']}: {summ}"
                          + ("  (stand-in tokenizer)" if mt.kind == "stand-in" else ""))
                for line in truncation_problems(rows):
                    print(f"warning: {line}")
            continue
        if not 0 <= args.row < len(train):
            raise DialsumError(f"{train_csv}: --row {args.row} out of range (0..{len(train) - 1})")
        v = example_view(mt, m, train[args.row])
        out.append(v)
        if not args.json:
            print(format_view(v))
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 and not args.lengths else out, ensure_ascii=False))
    return 0


def _facts_hint(m) -> str:
    """Where ../shared/checkpoints has this hub id's tokenizer facts: the --tokenizer that previews it offline."""
    from dialsum.models.standins import facts_folder

    root = Path(__file__).resolve().parents[3].parent / "shared" / "checkpoints"
    folder = facts_folder(root, m.path, m.revision) if m.path and root.is_dir() else None
    return f"; or preview its tokenizer offline: --tokenizer {folder}" if folder else ""
