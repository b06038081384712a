"""Stage 9, releases: takes pack folders of several chips, gives a web-flasher manifest (esp-web-tools, ESP Launchpad)."""
