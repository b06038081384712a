from imgtool.cli.main import run

run()
