"""The `brain` console script of the pip package: runs the packaged C++ tool."""

import os
import sys

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "brain")


def main():
    if not os.access(TOOL, os.X_OK):
        sys.stderr.write(f"brain: the command-line tool is missing from the package ({TOOL}); reinstall libbrain.\n")
        sys.exit(1)
    os.execv(TOOL, [TOOL] + sys.argv[1:])


if __name__ == "__main__":
    main()
