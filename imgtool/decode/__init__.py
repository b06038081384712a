"""Stage 10, decoding: what the running app prints, made readable on the host: code addresses to functions and source
lines (:mod:`~imgtool.decode.symbols`, :mod:`~imgtool.decode.addresses`) and defmt frames to log lines
(:mod:`~imgtool.decode.defmt`, :mod:`~imgtool.decode.esp_println`). Pure functions over bytes and an
ELF: nothing here opens a port."""
