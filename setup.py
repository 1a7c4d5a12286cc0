"""The one compiled part: the OTLP wire reader (collector/_wire.pyx).

It is optional: without a C compiler the build skips it with a warning and
the collector decodes with upb and Python instead (slower, same results).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("collector._wire", ["collector/_wire.pyx"], optional=True)],
        language_level=3,
    )
)
