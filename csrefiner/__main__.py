from csrefiner.cli import main

main()
