#!/bin/sh
echo tok:; cat /tmp/docs-run/tok; echo; ls /tmp/docs-run/s7 | head -3; echo hide=$BUILDER_SANDBOX_HIDE; touch /etc/x 2>&1; echo home=$HOME; getent hosts example.org || echo nonet; echo ok > out.txt
