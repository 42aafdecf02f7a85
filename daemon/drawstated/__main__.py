"""`python -m drawstated` is `drawstate serve`."""

from drawstated.cli import main

if __name__ == "__main__":
    main(["serve", *__import__("sys").argv[1:]], prog_name="python -m drawstated")
