from lor2c_probe.cli import main

main()
