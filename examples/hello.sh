#!/bin/sh
# The sample job `npm start` submits: prints where it runs and leaves two
# artifacts, so done/hello/latest/ shows every part of a result.
set -e
echo "hello from job $BUILDER_JOB_ID ($BUILDER_JOB_NAME) on $BUILDER_PLATFORM"
uname -a
echo "working directory: $(pwd)"
date -u +%Y-%m-%dT%H:%M:%SZ > built-at.txt
mkdir -p dist
printf '#!/bin/sh\necho hello, world\n' > dist/hello
chmod +x dist/hello
echo "left built-at.txt and dist/hello as artifacts"
