"""One module per command: each reads its arguments, prints what happens and returns the exit
code; the modules beside this package (status, recover, attach, events, remote, driver) decide."""
