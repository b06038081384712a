"""Stage 7, the pack job: takes an ELF and the pack options (with the project's espflash settings), runs stages 1-6 and gives one result and the output folder, written atomically."""
