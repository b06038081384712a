"""Stage 1, the firmware ELF: takes the file cargo built, gives its loadable pieces, entry point, app descriptor and the chip it was built for."""
