"""eie.app: the applications (the `eie` CLI, the demo, the board host driver, the benchmark
commands). They sit above the libraries (`eie.common`, `eie.hw`, `eie.sw`, `eie.sim`,
`eie.boards`); nothing in a library imports them."""
