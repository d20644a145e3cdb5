"""Only the C part of the build; everything else is declared in pyproject.toml.

``loglog._speedups`` is the logger's hot path in C. It is optional: where it cannot be
compiled (no C compiler or Python headers), the install still succeeds and loglog runs
its pure-Python hot path (``loglog.SPEEDUPS`` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "loglog._speedups",
            ["loglog/_speedups.c"],
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
            ],
            optional=True,
        )
    ]
)
