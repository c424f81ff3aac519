from fmnist_core.commands.cli import main_exit

main_exit()
