"""The public names are the package's: each one in ``tft_lab.__all__`` exists and is the
function or class it says, whatever submodules were imported before (no shadowing)."""
import importlib
import pkgutil

import tft_lab


def test_every_public_name_exists_even_after_every_submodule_is_imported():
    for mod in pkgutil.iter_modules(tft_lab.__path__):
        importlib.import_module(f"tft_lab.{mod.name}")
    for name in tft_lab.__all__:
        obj = getattr(tft_lab, name)
        assert not isinstance(obj, type(tft_lab)), f"tft_lab.{name} is a module, not the public {name}"
    assert callable(tft_lab.record) and callable(tft_lab.replay) and callable(tft_lab.compare)


def test_errors_share_one_root():
    for name in tft_lab.__all__:
        obj = getattr(tft_lab, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, tft_lab.TftError)
