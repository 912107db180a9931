"""Fused attention kernels, each beside its plain-torch reference (the package `lcbench.kernels`)."""

if __name__ == "kernels":
    # This folder was found as a top-level `kernels`: the repository's root is on sys.path (`python -m`
    # run there, or a worker process started there). That name belongs to PyPI's `kernels`, which
    # transformers imports: where it is installed, it is loaded in this module's place, so that the
    # folder does not shadow it.
    import sys
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec
    from pathlib import Path

    _root = Path(__file__).resolve().parent.parent
    _spec = PathFinder.find_spec(__name__, [p for p in sys.path if Path(p or ".").resolve() != _root])
    if _spec is not None and _spec.loader is not None:
        _module = module_from_spec(_spec)
        sys.modules[__name__] = _module  # the import statement returns what sys.modules holds
        _spec.loader.exec_module(_module)
