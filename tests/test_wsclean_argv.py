"""[wsclean] values → argv items, channels-out resolution, WSClean's option list."""

import pytest

from imgpipe.core.errors import ConfigError, InputError
from imgpipe.core.wsclean_argv import build_argv, check_option_names, option_items, resolve_channels_out
from imgpipe.facts.wsclean_options import known_options, parse_help

from support.markers import requires_wsclean


@pytest.mark.parametrize(
    "key, value, items",
    [
        ("size", "1024 1024", ["-size", "1024", "1024"]),
        ("weight", "briggs 0", ["-weight", "briggs", "0"]),
        ("fits-mask", "'/data/my mask.fits'", ["-fits-mask", "/data/my mask.fits"]),
        ("niter", 10000, ["-niter", "10000"]),
        ("mgain", 0.8, ["-mgain", "0.8"]),
        ("shift", ["10h00m00s", "50d00m00s"], ["-shift", "10h00m00s", "50d00m00s"]),
        ("multiscale-scales", [0, 5, 12.5], ["-multiscale-scales", "0", "5", "12.5"]),
        ("multiscale", True, ["-multiscale"]),
        ("no-dirty", False, []),
        ("name-with;semicolon", "a;b $(x)", ["-name-with;semicolon", "a;b", "$(x)"]),
    ],
)
def test_option_items(key, value, items):
    assert option_items(key, value) == items


def test_build_argv_order_and_channels_out():
    argv = build_argv(
        ["singularity", "exec", "ws.sif", "wsclean"],
        "/out/img",
        [("size", "64 64"), ("channels-out", "all"), ("join-channels", True)],
        ["/a.MS", "/b.MS"],
        channels_out=8,
    )
    assert argv == [
        "singularity", "exec", "ws.sif", "wsclean", "-name", "/out/img",
        "-size", "64", "64", "-channels-out", "8", "-join-channels", "/a.MS", "/b.MS",
    ]


def count(n):
    return lambda paths: n


@pytest.mark.parametrize("value, n, expected", [(3, 99, 3), ("all", 64, 64), ("every4", 64, 16), ("every3", 64, 21), ("every64", 64, 1)])
def test_resolve_channels_out(value, n, expected):
    assert resolve_channels_out(value, ["/a.MS"], count(n)) == expected


def test_channels_out_zero_is_an_error():
    with pytest.raises(InputError, match=r"channels-out = 'every8' gives 0 output channels: 4 distinct channel\(s\) in /a.MS"):
        resolve_channels_out("every8", ["/a.MS"], count(4))


HELP = """
  ** GENERAL OPTIONS **
-version
   Print WSClean's version and exit.
-verbose (or -v)
-update-model-required (default), and
-no-update-model-required
-no-small-inversion and -small-inversion
-iuwt-snr-test / -no-iuwt-snr-test
-grid-mode <"nn", "kb" or "rect">
   Kernel and mode used for gridding: kb = Kaiser-Bessel -not-an-option
-visibility-weighting-mode [normal/squared/unit]
-name <image-prefix>
-size <width> <height>
"""


def test_parse_help():
    assert parse_help(HELP) == {
        "version", "verbose", "v", "update-model-required", "no-update-model-required",
        "no-small-inversion", "small-inversion", "iuwt-snr-test", "no-iuwt-snr-test",
        "grid-mode", "visibility-weighting-mode", "name", "size",
    }


@requires_wsclean
def test_installed_wsclean_options_and_suggestion(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    known_options.cache_clear()
    names = known_options(("wsclean",))
    assert {"size", "scale", "niter", "auto-threshold", "channels-out", "join-channels", "weight"} <= names
    assert list((tmp_path / "imgpipe").glob("wsclean-options-*.json"))  # cached on disk
    check_option_names(["size", "auto-threshold"], names, "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml: \[wsclean\] auto-treshold: WSClean has no option -auto-treshold \(did you mean -auto-threshold\?\)"):
        check_option_names(["size", "auto-treshold"], names, "c.toml")
    with pytest.raises(ConfigError, match=r"no option -zzzzzz$"):
        check_option_names(["zzzzzz"], names, "c.toml")


def test_missing_wsclean_is_a_clear_error():
    from imgpipe.core.errors import WSCleanNotFound

    with pytest.raises(WSCleanNotFound, match="WSClean not found: 'no-such-wsclean-xyz' is not on PATH"):
        known_options(("no-such-wsclean-xyz",))


def test_not_wsclean_is_refused(tmp_path, monkeypatch):
    from imgpipe.core.errors import WSCleanNotFound

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(WSCleanNotFound, match="does not look like WSClean"):
        known_options(("true",))
