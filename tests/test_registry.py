import subprocess
import sys
import textwrap

import pytest

from limr.config import load_config
from limr.registry import (
    BENCHMARKS,
    REWARDS,
    SAMPLERS,
    SELECTORS,
    PluginImportError,
    Registry,
    RegistryError,
    import_plugins,
)


def test_register_get_names():
    reg = Registry("widget")

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a") is a and reg.names() == ["a"] and "a" in reg
    assert reg.build("a") == 1


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_unknown_name_lists_known_names_and_suggests():
    reg = Registry("widget")
    reg.register("alpha")(lambda: 1)
    reg.register("beta")(lambda: 2)
    with pytest.raises(RegistryError) as err:
        reg.get("alpah")
    msg = str(err.value)
    assert "unknown widget 'alpah'" in msg and "'alpha'" in msg and "alpha, beta" in msg


def test_builtin_plugins_register_on_import():
    import_plugins()
    assert "hf" in SAMPLERS and "vllm" in SAMPLERS
    for reg in (SELECTORS, REWARDS, BENCHMARKS, SAMPLERS):
        assert isinstance(reg.names(), list)


def test_user_plugin_module_from_config(tmp_path, monkeypatch):
    (tmp_path / "my_plugins.py").write_text(
        textwrap.dedent(
            """
            from limr.registry import register_selector

            @register_selector("my_top1")
            class TopOne:
                def __init__(self, **kwargs):
                    self.kwargs = kwargs
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(None, ["plugins=[my_plugins]"])
    import_plugins(cfg.plugins)
    assert SELECTORS.build("my_top1", threshold=0.5).kwargs == {"threshold": 0.5}


def test_missing_plugin_module_is_a_clear_error():
    with pytest.raises(PluginImportError, match="no_such_module_xyz"):
        import_plugins(["no_such_module_xyz"])


def test_no_stdlib_shadowing():
    # limr/selectors must not shadow the stdlib `selectors` module (subprocess needs it).
    code = "import limr.selectors, selectors, subprocess; print(selectors.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "limr" not in out.stdout
