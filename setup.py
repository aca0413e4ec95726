"""The package list of the `audiosearch` distribution: each top-level folder is a subpackage, audiosearch.<folder>.

Hand-written because setuptools' package discovery cannot add a prefix to the packages it finds.
"""

from setuptools import find_packages, setup

FOLDERS = ("app", "core", "indexer", "models", "training")

setup(
    packages=[f"audiosearch.{top}{'.' + sub if sub else ''}" for top in FOLDERS for sub in ["", *find_packages(top)]],
    package_dir={f"audiosearch.{top}": top for top in FOLDERS},
)
