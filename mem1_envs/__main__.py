"""Command line: ``python -m mem1_envs build-index ...`` and ``python -m mem1_envs serve-retriever ...``.

Build a BM25 index of a Search-R1 corpus, then serve it over Search-R1's ``/retrieve`` API::

    python -m mem1_envs build-index --corpus wiki-18.jsonl.gz --out indexes/wiki-bm25
    python -m mem1_envs serve-retriever --index indexes/wiki-bm25 --port 8000

Check FlashRAG QA files before training on them (bad rows, split sizes, MEM1 episodes)::

    python -m mem1_envs check-data --data nq=nq/train.jsonl,hotpotqa=hotpotqa/train.jsonl

The memory-scaling study and every benchmark in one run (``scripts/memory_scaling.py`` and
``scripts/bench.py`` of a source checkout; their own arguments)::

    python -m mem1_envs scaling --quick
    python -m mem1_envs bench --quick

A dense index (extra ``dense``) takes a local sentence-embedding model folder::

    python -m mem1_envs build-index --kind dense --model models/e5-base-v2 --e5 \\
        --corpus wiki-18.jsonl.gz --out indexes/wiki-e5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mem1_envs.validation import check_float, check_folder, check_int, cli_type

# argparse types: the shared checks (mem1_envs.validation), so "--k1 -1" fails as k1=-1 would.
_positive = cli_type(check_int, int, minimum=1)
_port = cli_type(check_int, int, minimum=0, maximum=65535)
_k1 = cli_type(check_float, float, minimum=0)
_b = cli_type(check_float, float, minimum=0, maximum=1)
_seconds = cli_type(check_float, float, above=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mem1_envs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-index", help="index a Search-R1 corpus (jsonl or jsonl.gz)")
    build.add_argument("--corpus", required=True, help='corpus file: one {"id", "contents"} JSON row a line')
    build.add_argument("--out", required=True, help="index folder to create")
    build.add_argument("--kind", choices=("bm25", "dense"), default="bm25", help="retriever (default bm25)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    build.add_argument("--limit", type=_positive, default=None, help="index only the first N passages")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--k1", type=_k1, default=1.5, help="BM25 k1, >= 0 (default 1.5)")
    build.add_argument("--b", type=_b, default=0.75, help="BM25 b, in [0, 1] (default 0.75)")
    dense = build.add_argument_group("dense (extra 'dense')")
    dense.add_argument("--model", help="local sentence-embedding model folder (Hugging Face layout)")
    dense.add_argument("--e5", action="store_true", help="prefix 'query: ' / 'passage: ' (E5 models)")
    dense.add_argument("--faiss", choices=("flat", "ivf"), default="flat", help="faiss index type")
    dense.add_argument("--nlist", type=_positive, default=None, help="IVF lists (default ~4*sqrt(N))")
    dense.add_argument("--batch-size", type=_positive, default=64, help="encoding batch size")
    dense.add_argument("--max-length", type=_positive, default=256, help="tokens per passage")

    check = commands.add_parser("check-data", help="load QA files, report bad rows, splits and episodes")
    check.add_argument("--data", required=True, help="FlashRAG QA files: name=path[,name=path...]")
    check.add_argument("--on-bad-row", choices=("error", "skip"), default="error", help="default: error")
    check.add_argument(
        "--num-objectives", type=_positive, default=2, help="N for the episode count (default 2)"
    )

    serve = commands.add_parser("serve-retriever", help="serve an index over Search-R1's /retrieve API")
    serve.add_argument("--index", required=True, help="index folder made by build-index")
    serve.add_argument("--corpus", help="check the index against this corpus file (fingerprint)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    serve.add_argument("--port", type=_port, default=8000, help="port (0: a free one, printed)")
    serve.add_argument("--model", help="dense index: model folder, if not the one recorded at build time")
    serve.add_argument("--max-queries", type=_positive, default=None, help="queries per request")
    serve.add_argument("--max-topk", type=_positive, default=None, help="largest topk")
    serve.add_argument("--max-query-chars", type=_positive, default=None, help="characters per query")
    serve.add_argument("--max-body-bytes", type=_positive, default=None, help="request body size")
    serve.add_argument("--default-topk", type=_positive, default=None, help="topk when a request omits it")
    serve.add_argument(
        "--body-timeout",
        type=_seconds,
        default=None,
        help="seconds to receive a request body, else 408 (default 5)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        help="uvicorn log level (default warning)",
    )

    # Runs a script of the checkout's scripts/ with the remaining arguments (its own --help).
    commands.add_parser(
        "bench", add_help=False, help="every benchmark in one run (scripts/bench.py; --help for its options)"
    )
    commands.add_parser(
        "scaling",
        add_help=False,
        help="memory-scaling study (scripts/memory_scaling.py; --help for its options)",
    )
    return parser


_SCRIPTS = {"scaling": "memory_scaling", "bench": "bench"}


def _run_script(command: str, argv: list[str]) -> int:
    """``main(argv)`` of ``scripts/<name>.py`` of a source checkout: the one this package was
    imported from, else the one in the current directory (an installed package and its checkout)."""
    import importlib.util
    from pathlib import Path

    name = f"{_SCRIPTS[command]}.py"
    places = [Path(__file__).resolve().parents[1] / "scripts", Path.cwd() / "scripts"]
    path = next((place / name for place in places if (place / name).is_file()), None)
    if path is None:
        raise OSError(
            f"{command} runs scripts/{name} of a source checkout; not found in {' or '.join(map(str, places))} "
            "(run it from the checkout's root)"
        )
    spec = importlib.util.spec_from_file_location(_SCRIPTS[command], path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    code = module.main(argv)
    return code if isinstance(code, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in _SCRIPTS:
        try:
            return _run_script(args.command, rest)
        except OSError as error:  # no checkout here, or an output folder that cannot be written
            print(f"{args.command}: error: {error}", file=sys.stderr)
            return 1
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    command = {"build-index": _build, "check-data": _check_data, "serve-retriever": _serve}[args.command]
    try:
        return command(args)
    except (ValueError, OSError, ImportError) as error:  # bad files and arguments: one clear line
        print(f"{args.command}: error: {error}", file=sys.stderr)
        return 1


def _check_data(args: argparse.Namespace) -> int:
    import warnings

    from mem1_envs.qa.data import compose_consecutive, load_qa_sources, split_by_text

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skip counts are printed below
        files = load_qa_sources(args.data, on_bad_row=args.on_bad_row)
    n = args.num_objectives
    print(
        f"{'source':<12} {'questions':>9} {'skipped':>7} {'train':>7} {'test':>6} {f'episodes(N={n})':>14}  file"
    )
    for loaded in files:
        test = len(split_by_text(loaded.questions, "test"))
        episodes = len(compose_consecutive(loaded.questions, n))
        print(
            f"{loaded.name:<12} {len(loaded.questions):>9} {loaded.skipped:>7} "
            f"{len(loaded.questions) - test:>7} {test:>6} {episodes:>14}  {loaded.path}"
        )
        for example in loaded.skipped_examples:
            print(f"  skipped {example}")
    return 0


def _build(args: argparse.Namespace) -> int:
    if args.kind == "bm25":
        from mem1_envs.qa.index import build_index

        info = build_index(
            args.corpus,
            args.out,
            k1=args.k1,
            b=args.b,
            show_progress=not args.no_progress,
            overwrite=args.overwrite,
            limit=args.limit,
        )
    else:
        if not args.model:
            raise SystemExit("build-index --kind dense needs --model MODEL_DIR")
        check_folder("--model", args.model)  # a local folder: nothing is fetched from a hub
        from mem1_envs.qa.dense import build_dense_index

        info = build_dense_index(
            args.corpus,
            args.out,
            args.model,
            e5_prefixes=args.e5,
            index_type=args.faiss,
            nlist=args.nlist,
            batch_size=args.batch_size,
            max_length=args.max_length,
            show_progress=not args.no_progress,
            overwrite=args.overwrite,
            limit=args.limit,
        )
    print(
        f"built {info.kind} index of {info.num_passages} passages in {info.build_seconds:.1f} s: {args.out}",
        flush=True,
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from mem1_envs.qa.index import open_index
    from mem1_envs.qa.server import ServiceLimits, serve

    overrides = {
        "max_queries": args.max_queries,
        "max_topk": args.max_topk,
        "max_query_chars": args.max_query_chars,
        "max_body_bytes": args.max_body_bytes,
        "default_topk": args.default_topk,
        "body_timeout": args.body_timeout,
    }
    limits = ServiceLimits(**{name: value for name, value in overrides.items() if value is not None})
    if args.model is not None:
        check_folder("--model", args.model)
    engine = open_index(args.index, corpus=args.corpus, model=args.model)
    serve(engine, host=args.host, port=args.port, limits=limits, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
