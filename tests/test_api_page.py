"""The API reference page (book/api.md): one section per public module, built from the docstrings without a warning,
with the capability table generated from the registry."""

from __future__ import annotations

import html
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ibcore
import ibcore.estimators as est
from ibcore.estimators.interface import _REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "api.md"


def _public_modules() -> list[str]:
    names = ["ibcore"]
    for info in pkgutil.walk_packages(ibcore.__path__, "ibcore."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _documented() -> list[str]:
    return re.findall(r"^\.\. automodule:: (\S+)$", PAGE.read_text(), flags=re.M)


def test_every_public_module_has_one_section():
    documented = _documented()
    assert sorted(set(documented)) == sorted(documented), "a module is documented twice"
    assert set(documented) == set(_public_modules())


def test_the_page_is_in_the_toc_and_the_extensions_are_enabled():
    assert "book/api" in (ROOT / "_toc.yml").read_text()
    extensions = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["extra_extensions"]
    assert {"sphinx.ext.autodoc", "sphinx.ext.napoleon", "ibcore._sphinx"} <= set(extensions)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> str:
    # the page alone, with the book's extensions and MyST settings, as warnings-are-errors Sphinx builds it
    src = tmp_path_factory.mktemp("api")
    shutil.copy(PAGE, src / "index.md")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = ["myst_parser"] + [e for e in cfg["sphinx"]["extra_extensions"] if e != "sphinx-mathjax-offline"]
    options = {k: v for k, v in cfg["sphinx"]["config"].items() if k.startswith(("autodoc_", "napoleon_"))}
    conf = [f"extensions = {extensions!r}", f"myst_enable_extensions = {cfg['parse']['myst_enable_extensions']!r}"]
    conf += [f"{k} = {v!r}" for k, v in options.items()]
    (src / "conf.py").write_text("\n".join(conf) + "\n")
    out = src / "_build"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(src), str(out)],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return (out / "index.html").read_text()


def test_the_page_builds_without_warnings_and_documents_the_estimators(built):
    for cls in {type(est.make(name)) for name in est.available()}:
        assert f'id="{cls.__module__}.{cls.__name__}"' in built, cls


def test_the_capability_table_has_one_row_per_estimator_and_links_each_class(built):
    table = re.search(r'<table class="[^"]*capability-table.*?</table>', built, flags=re.S)
    assert table, "no capability table on the page"
    rows = re.findall(r"<tr.*?</tr>", table.group(0), flags=re.S)
    assert len(rows) == 1 + len(est.available())  # the header, then one row per registered estimator
    for name in est.available():
        cls = _REGISTRY[name]
        row = next(r for r in rows if f'<span class="pre">{name}</span>' in r)
        assert f'href="#{cls.__module__}.{cls.__name__}"' in row, name
        assert ("yes" in row) == any(est.capabilities(name)[k] is True for k in ("images", "trained", "weighted",
                                                                                 "batched"))  # fmt: skip


def test_the_parameter_table_lists_each_estimators_defaults(built):
    table = re.search(r'<table class="[^"]*parameter-table.*?</table>', built, flags=re.S)
    assert table, "no parameter table on the page"
    rows = re.findall(r"<tr.*?</tr>", table.group(0), flags=re.S)
    assert len(rows) == 1 + len(est.available())
    for name in est.available():
        row = next(r for r in rows if f'<span class="pre">{name}</span>' in r)
        text = html.unescape(re.sub(r"<[^>]+>", "", row))  # the cell's text as a reader sees it
        for key, value in est.capabilities(name)["params"].items():
            assert f"{key}={value!r}" in text, (name, key, text)
