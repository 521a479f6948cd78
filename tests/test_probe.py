"""What a node has, as its jobs see it: the probe's answers, and a probe that cannot tell."""

from __future__ import annotations

import pytest

from imgpipe.backends.probe import missing_commands
from imgpipe.core.errors import NodeError


def test_missing_commands_are_named_after_the_env_file(tmp_path):
    env = tmp_path / "env.sh"
    env.write_text(f"mkdir -p {tmp_path}/bin; printf '#!/bin/sh\\n' > {tmp_path}/bin/mytool; chmod +x {tmp_path}/bin/mytool\n"
                   f"export PATH={tmp_path}/bin:$PATH\n")
    assert missing_commands("localhost", str(env), ["bash", "mytool", "no-such-tool-xyz"]) == ["no-such-tool-xyz"]


def test_a_failing_env_file_is_named(tmp_path):
    env = tmp_path / "env.sh"
    env.write_text("false\n")
    with pytest.raises(NodeError, match=f"localhost: env_file {env} fails when sourced"):
        missing_commands("localhost", str(env), ["bash"])


def test_a_shell_that_dies_on_the_way_does_not_pass_for_a_node_that_has_everything(tmp_path):
    env = tmp_path / "env.sh"
    env.write_text("echo loading modules\nexit 3\n")
    with pytest.raises(NodeError, match=r"localhost: cannot check for mpirun, wsclean-mp: the shell exited with status 3: "
                                        r"no output \(does env_file .* call exit\?\)"):
        missing_commands("localhost", str(env), ["mpirun", "wsclean-mp"])
