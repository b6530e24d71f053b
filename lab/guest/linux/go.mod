module ferry.lab/guest

go 1.21
