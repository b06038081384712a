"""Stage 8, reading back: takes a pack folder, a merged image or a flash dump, gives what is in it and whether the chip's bootloader would boot it (verify), without writing anything."""
