from engage_cli.main import main

main()
