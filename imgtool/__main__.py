from imgtool.cli import run

run()
