"""`python -m brain ...`: the command-line tool, e.g. under torchrun:
    torchrun --nproc_per_node=4 -m brain run models/coba.json
"""

from brain._cli import main

main()
