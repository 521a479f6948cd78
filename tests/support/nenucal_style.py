"""A config as nenucal's users write them: its template's [worker] keys, with their empty strings.

Written here for the tests (not copied from nenucal): the keys and values the original's
template has, which imgpipe must load with the same meaning.
"""

WORKER_AND_DATA_HANDLER = """
[worker]
nodes = '{nodes}'
max_concurrent = 4
env_file = ''
debug = false
dry_run = false
run_on_file_host = false
run_on_file_host_pattern = ''
slurm_nodes = 0

[worker.resources]

[data_handler]
config_file = '{data_handler}'
data_level = '{level}'
"""


def nenucal_style(wsclean: str, nodes: str = "localhost", data_handler: str = "", level: str = "L2") -> str:
    """A whole config in nenucal's style with this ``[wsclean]`` section body."""
    return WORKER_AND_DATA_HANDLER.format(nodes=nodes, data_handler=data_handler, level=level) + "\n[wsclean]\n" + wsclean
