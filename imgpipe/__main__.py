"""``python -m imgpipe`` = ``imgpipe``."""

from imgpipe.cli import main

if __name__ == "__main__":
    main(prog_name="imgpipe")
