"""
Sphinx configuration for the sunpy-jsoc-cutout documentation.

The documentation is built without network access: intersphinx is off and the example
gallery runs against the offline JSOC (`sunpy_jsoc_cutout.testing`), never the real one.
"""

import os
from datetime import UTC, datetime
from importlib.metadata import version as _version

# The gallery examples draw with matplotlib; no display is available while building.
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep parfive's progress bars out of the rendered examples.
os.environ.setdefault("PARFIVE_HIDE_PROGRESS", "1")

project = "sunpy-jsoc-cutout"
author = "The sunpy-jsoc-cutout developers"
copyright = f"{datetime.now(UTC).year}, {author}"
release = _version("sunpy-jsoc-cutout")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_changelog",
    "sphinx_gallery.gen_gallery",
]

# docs/examples holds the gallery's sources; sphinx-gallery renders them into generated/gallery.
exclude_patterns = ["_build", "examples", "**.ipynb_checkpoints"]
default_role = "obj"
nitpicky = False

# numpydoc-style docstrings, read by napoleon (numpydoc itself is not a dependency).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"

# No network while building: no intersphinx inventories.
intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "generated/gallery",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
}

try:
    import sunpy_sphinx_theme  # noqa: F401
except ImportError:
    html_theme = "alabaster"
else:
    html_theme = "sunpy"
html_title = f"sunpy-jsoc-cutout {release}"
html_static_path = []


def _include_released_changelog(app, docname, source):
    """Show the released changelog under the towncrier draft once CHANGELOG.rst exists."""
    if docname == "changelog" and os.path.exists(os.path.join(app.srcdir, "..", "CHANGELOG.rst")):
        option = "   :towncrier-skip-if-empty:"
        source[0] = source[0].replace(option, option + "\n   :changelog_file: ../CHANGELOG.rst")


def _reread_changelog(app, env, added, changed, removed):
    """Re-render the changelog page on every build: its news fragments live outside docs/."""
    return ["changelog"]


def setup(app):
    app.connect("source-read", _include_released_changelog)
    app.connect("env-get-outdated", _reread_changelog)
