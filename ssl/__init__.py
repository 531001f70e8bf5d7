# This package shares its name with the standard library's TLS module. Run from the repository
# root it replaces that module for the whole process, so it must BE that module: the standard
# library's own `ssl` code is executed here, in this package's namespace. Monkeypatches such as
# truststore.inject_into_ssl() then act on the one module every library uses. The pretraining code
# lives in submodules (ssl.pretrain, ...), which stay importable because this is a package.
# Nothing else belongs in this file.
def _exec_stdlib_ssl(namespace: dict) -> None:
    import importlib.machinery
    import os
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    search = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("ssl", search)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
        raise ImportError("cannot find the standard library's ssl module outside the dermkit repository")
    code = spec.loader.get_code("ssl")
    exec(code, namespace)  # noqa: S102 - deliberately runs the stdlib module's own code here


_exec_stdlib_ssl(globals())
del _exec_stdlib_ssl
