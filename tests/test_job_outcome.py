"""backends/job_script: a job's outcome from its wrapper's control lines (a full disk, long words)."""

from imgpipe.backends.job_script import OutputParser, cut, outcome
from imgpipe.core.results import FAILED

CFITSIO = ("+ >>> CFITSIO reported error when performing IO on file '/out/img-dirty.fits':error writing to FITS file "
           "(Error writing data buffer to file:/out/img-dirty.fits)")


def parsed(*lines: str) -> OutputParser:
    parser = OutputParser("tok")
    for line in lines:
        parser.take(line, lambda _: None)
    return parser


def test_a_failed_write_on_a_full_file_system_is_a_full_disk():
    p = parsed("@imgpipe-tok started 12", "+ An exception occured:", CFITSIO, "@imgpipe-tok space 0 6144 /out",
               "@imgpipe-tok exit 255")
    status, code, reason = outcome(p.state, p.last_words)
    assert (status, code) == (FAILED, 255)
    assert reason.startswith("no space left on device: the file system mounted at /out has nothing free of 6.0 MiB "
                             "(exit code 255: + >>> CFITSIO")


def test_a_failed_write_with_room_left_or_another_error_on_a_full_disk_is_not():
    roomy = parsed("@imgpipe-tok started 12", CFITSIO, "@imgpipe-tok space 104857600 209715200 /out", "@imgpipe-tok exit 255")
    assert outcome(roomy.state, roomy.last_words)[2].startswith("exit code 255: + >>> CFITSIO")
    other = parsed("@imgpipe-tok started 12", "Error: unknown option -sizee", "@imgpipe-tok space 10 6144 /out",
                   "@imgpipe-tok exit 1")
    assert outcome(other.state, other.last_words)[2] == "exit code 1: Error: unknown option -sizee"


def test_long_words_are_cut_after_a_word():
    assert cut("short words", 300) == "short words"
    assert cut("error writing elements 518401 thru 525600", 30) == "error writing elements 518401 …"
    assert cut("x" * 50, 10) == "x" * 10 + " …"
