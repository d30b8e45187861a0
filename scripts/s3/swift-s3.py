#!/usr/bin/python3
"""Run OpenStack Swift + s3api as a real, signature-checking S3 test server.

Usage:
    /usr/bin/python3 scripts/s3/swift-s3.py --data-dir DIR --port PORT \
        --access-key ACCOUNT:USER --secret-key SECRET \
        [--memcached-port N | --no-memcached] [--exit-with-parent]

Everything (configs, rings, object data, logs) lives under DIR; nothing is read
from /etc/swift. Every socket is bound to 127.0.0.1. Once a SigV4-signed
ListBuckets request succeeds, one line `READY http://127.0.0.1:PORT` is printed
on stdout; the launcher then runs until SIGTERM/SIGINT, when it stops all of
its children and exits 0. If a child dies, it prints that child's log tail on
stderr and exits 1. Readiness is awaited for at most 60 s.

Layout of DIR (kept between runs: objects and the hash prefix/suffix in
swift.conf survive a restart; rings and server configs are rewritten):
    etc/        swift.conf, {account,container,object}.ring.gz, *-server.conf
    devices/d1  the one storage device (a plain directory)
    log/        proxy.log                 access log, one line per client
                                          request (swift's standard format;
                                          the readiness probe adds a GET /)
                proxy-subrequests.log     requests that middlewares (s3api,
                                          slo, copy...) make inside the proxy
                {proxy,account,container,object}-server.log, memcached.log

memcached (optional) halves small-request latency. Without it the proxy's
cache filter still has to stay (tempauth refuses requests without a memcache
client) and points at a loopback port this launcher holds but never listens on.

Internal mode (used by the launcher for its children):
    swift-s3.py --serve {proxy,account,container,object}-server --data-dir DIR

Needs Debian's python3-swift (scripts/s3/install.sh); run it with
/usr/bin/python3, which is the interpreter that sees Debian's packages.
"""

import argparse
import ctypes
import datetime
import hashlib
import hmac
import http.client
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

LOOPBACK = '127.0.0.1'
REGION = 'us-east-1'
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SERVERS = ('account-server', 'container-server', 'object-server',
           'proxy-server')
RING_FOR = {'account-server': 'account', 'container-server': 'container',
            'object-server': 'object'}
EGG_FOR = {'account-server': 'account', 'container-server': 'container',
           'object-server': 'object', 'proxy-server': 'proxy'}
# proxy-logging sits twice in the pipeline. The left (outer) one logs each
# client request once; the right (inner) one logs only the subrequests that
# middlewares (s3api, slo, copy, bulk...) make inside the proxy.
ACCESS_LOG_ROUTE = 'proxy-access'
SUBREQUEST_LOG_ROUTE = 'proxy-access-subrequests'
ACCESS_LOGS = {ACCESS_LOG_ROUTE: 'proxy.log',
               SUBREQUEST_LOG_ROUTE: 'proxy-subrequests.log'}
PART_POWER = 8
# Account and user names end up in the tempauth option name
# "user_<account>_<user>" and in the S3 access key "<account>:<user>".
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9.-]*$')
PR_SET_PDEATHSIG = 1


def log(msg):
    sys.stderr.write('swift-s3: %s\n' % msg)
    sys.stderr.flush()


def die(msg, code=2):
    log(msg)
    sys.exit(code)


def set_parent_death_signal(sig):
    """Linux: deliver `sig` to this process when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except Exception:  # not Linux, or no prctl: best effort only
        pass


def child_preexec():
    # Each child gets its own session/process group (start_new_session), so
    # killpg() reaches its forked workers too, and a swift server's own
    # killpg(0, SIGTERM) at shutdown cannot hit the launcher. If the launcher
    # is killed outright, the children still get SIGTERM.
    set_parent_death_signal(signal.SIGTERM)


# ---------------------------------------------------------------------------
# Child mode: run one swift WSGI server from DIR/etc/<name>.conf
# ---------------------------------------------------------------------------

class _FileLogHandler(logging.Handler):
    """Stand-in for swift's syslog handler: appends lines to files in DIR/log.

    Records of the access loggers go unchanged (swift's standard access-log
    line) to the file named for their route in `route_files`; everything else
    goes to `server_log` with a timestamp and pid prepended. One os.write()
    per line on an O_APPEND descriptor keeps lines whole across the server's
    parent and worker processes, so no lock is needed.
    """
    server_log = None
    route_files = {}
    _fds = {}  # path -> fd, shared by all handlers, open for the process life

    def __init__(self, address=None, facility=None, **_kwargs):
        logging.Handler.__init__(self)
        self._fd(self.server_log)

    @classmethod
    def _fd(cls, path):
        fd = cls._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                         os.O_CLOEXEC, 0o644)
            cls._fds[path] = fd
        return fd

    def createLock(self):
        self.lock = None

    def emit(self, record):
        try:
            path = self.route_files.get(record.name)
            if path:
                # proxy-logging's message is the whole access-log line
                msg = record.getMessage()
            else:
                path = self.server_log
                msg = '%s [%d] %s' % (
                    datetime.datetime.now().isoformat(timespec='milliseconds'),
                    os.getpid(), self.format(record))
            os.write(self._fd(path),
                     (msg + '\n').encode('utf-8', 'backslashreplace'))
        except Exception:
            self.handleError(record)


def serve(name, data_dir):
    if name not in SERVERS:
        die('unknown server %r' % name)
    etc = os.path.join(data_dir, 'etc')
    conf_path = os.path.join(etc, name + '.conf')

    from swift.common import constraints, storage_policy, utils, wsgi

    log_dir = os.path.join(data_dir, 'log')
    _FileLogHandler.server_log = os.path.join(log_dir, name + '.log')
    if name == 'proxy-server':
        _FileLogHandler.route_files = dict(
            (route, os.path.join(log_dir, f))
            for route, f in ACCESS_LOGS.items())
    # get_logger() looks this name up at call time: log to files, not syslog.
    utils.ThreadSafeSysLogHandler = _FileLogHandler

    # Forked workers should not outlive their server process either.
    orig_post_fork_hook = wsgi.WorkersStrategy.post_fork_hook

    def post_fork_hook(self):
        set_parent_death_signal(signal.SIGKILL)
        return orig_post_fork_hook(self)
    wsgi.WorkersStrategy.post_fork_hook = post_fork_hook

    utils.set_swift_dir(etc)
    storage_policy.reload_storage_policies()
    constraints.reload_constraints()

    kwargs = {}
    if name == 'object-server':
        from swift.obj import server as object_server
        kwargs['global_conf_callback'] = object_server.global_conf_callback
    return wsgi.run_wsgi(conf_path, name, **kwargs)


# ---------------------------------------------------------------------------
# Launcher mode
# ---------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def check_port_free(port, what):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            die('%s port %s:%d is not available: %s'
                % (what, LOOPBACK, port, e))


def ini_value(section, value):
    # paste.deploy interpolates %(name)s in [DEFAULT] values only (the
    # options of other sections are read raw): escape '%' there.
    value = str(value)
    if '\n' in value or '\r' in value:
        raise ValueError('newline in config value %r' % value)
    return value.replace('%', '%%') if section == 'DEFAULT' else value


def write_ini(path, sections):
    lines = []
    for section, options in sections:
        lines.append('[%s]' % section)
        for key, value in options:
            lines.append('%s = %s' % (key, ini_value(section, value)))
        lines.append('')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(lines))
    os.replace(tmp, path)


def write_swift_conf(etc):
    path = os.path.join(etc, 'swift.conf')
    if os.path.exists(path):
        # Keep the hash prefix/suffix: data written before must stay findable.
        return
    write_ini(path, [
        ('swift-hash', [
            ('swift_hash_path_suffix', secrets.token_hex(16)),
            ('swift_hash_path_prefix', secrets.token_hex(16)),
        ]),
        ('storage-policy:0', [('name', 'Policy-0'), ('default', 'yes')]),
    ])


def build_rings(etc, ports):
    from swift.common.ring import RingBuilder
    for server, ring in RING_FOR.items():
        # One device holding every partition: the assignment is the same on
        # each run, only the backend port changes.
        builder = RingBuilder(PART_POWER, 1, 1)
        builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': LOOPBACK,
                         'port': ports[server], 'device': 'd1',
                         'weight': 100, 'meta': ''})
        builder.rebalance()
        tmp = os.path.join(etc, ring + '.ring.gz.tmp')
        builder.get_ring().save(tmp)
        os.replace(tmp, os.path.join(etc, ring + '.ring.gz'))


def write_server_confs(data_dir, ports, account, user, secret,
                       memcached_port, memcached_running):
    import pwd
    etc = os.path.join(data_dir, 'etc')
    run_as = pwd.getpwuid(os.geteuid()).pw_name
    for server in SERVERS:
        default = [
            ('bind_ip', LOOPBACK),
            ('bind_port', ports[server]),
            ('bind_timeout', 5),
            ('workers', 1),
            ('user', run_as),
            ('swift_dir', etc),
            ('devices', os.path.join(data_dir, 'devices')),
            ('mount_check', 'false'),
            ('disable_fallocate', 'true'),
            ('log_name', server),
            ('log_level', 'INFO'),
        ]
        app = [('use', 'egg:swift#' + EGG_FOR[server])]
        sections = [('DEFAULT', default)]
        if server != 'proxy-server':
            sections += [('pipeline:main', [('pipeline', server)]),
                         ('app:' + server, app)]
        else:
            pipeline = ['catch_errors', 'gatekeeper', 'healthcheck',
                        'proxy-logging', 'cache', 'listing_formats', 'bulk',
                        's3api', 'tempauth', 'copy', 'slo', 'dlo',
                        'proxy-logging-subrequests', 'proxy-server']
            app += [('account_autocreate', 'true')]
            sections += [
                ('pipeline:main', [('pipeline', ' '.join(pipeline))]),
                ('app:proxy-server', app),
                ('filter:catch_errors', [('use', 'egg:swift#catch_errors')]),
                ('filter:gatekeeper', [('use', 'egg:swift#gatekeeper')]),
                ('filter:healthcheck', [('use', 'egg:swift#healthcheck')]),
                ('filter:proxy-logging', [
                    ('use', 'egg:swift#proxy_logging'),
                    ('access_log_route', ACCESS_LOG_ROUTE),
                ]),
                ('filter:proxy-logging-subrequests', [
                    ('use', 'egg:swift#proxy_logging'),
                    ('access_log_route', SUBREQUEST_LOG_ROUTE),
                ]),
                ('filter:cache', [
                    ('use', 'egg:swift#memcache'),
                    ('memcache_servers', '%s:%s' % (LOOPBACK, memcached_port)),
                ] + ([] if memcached_running else [
                    # no memcached: silence one error line per request
                    ('set log_level', 'CRITICAL'),
                ])),
                ('filter:listing_formats',
                 [('use', 'egg:swift#listing_formats')]),
                ('filter:bulk', [('use', 'egg:swift#bulk')]),
                ('filter:s3api', [
                    ('use', 'egg:swift#s3api'),
                    ('location', REGION),
                    ('allow_multipart_uploads', 'true'),
                ]),
                ('filter:tempauth', [
                    ('use', 'egg:swift#tempauth'),
                    ('user_%s_%s' % (account, user), '%s .admin' % secret),
                ]),
                ('filter:copy', [('use', 'egg:swift#copy')]),
                ('filter:slo', [('use', 'egg:swift#slo')]),
                ('filter:dlo', [('use', 'egg:swift#dlo')]),
            ]
        write_ini(os.path.join(etc, server + '.conf'), sections)


def sigv4_list_buckets(port, access_key, secret_key, timeout=2.0):
    """Send a SigV4-signed ListBuckets (GET /); return (status, body)."""
    host = '%s:%d' % (LOOPBACK, port)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime('%Y%m%dT%H%M%SZ')
    day = now.strftime('%Y%m%d')
    payload_hash = hashlib.sha256(b'').hexdigest()
    headers = {'host': host, 'x-amz-content-sha256': payload_hash,
               'x-amz-date': amz_date}
    signed = ';'.join(sorted(headers))
    canonical = '\n'.join([
        'GET', '/', '',
        ''.join('%s:%s\n' % (k, headers[k]) for k in sorted(headers)),
        signed, payload_hash])
    scope = '%s/%s/s3/aws4_request' % (day, REGION)
    to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])

    def h(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()
    key = h(h(h(h(('AWS4' + secret_key).encode(), day), REGION), 's3'),
            'aws4_request')
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers['authorization'] = (
        'AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s'
        % (access_key, scope, signed, signature))
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request('GET', '/', headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_tcp(port, deadline):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tail(path, lines=40):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode('utf-8', 'replace')
    except OSError as e:
        return '(no log: %s)' % e
    return '\n'.join(data.splitlines()[-lines:])


class Launcher(object):
    def __init__(self, args):
        self.args = args
        self.data_dir = os.path.abspath(args.data_dir)
        self.log_dir = os.path.join(self.data_dir, 'log')
        self.children = {}  # name -> Popen
        self.stop_signal = None
        self.cache_placeholder = None

    def on_signal(self, signum, _frame):
        if self.stop_signal is None:
            self.stop_signal = signum

    def log_path(self, name):
        return os.path.join(self.log_dir, name + '.log')

    def spawn(self, name, argv):
        out = open(self.log_path(name), 'ab')
        try:
            self.children[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, preexec_fn=child_preexec,
                close_fds=True, cwd=self.data_dir)
        finally:
            out.close()

    def dead_children(self):
        return [(n, p.returncode) for n, p in self.children.items()
                if p.poll() is not None]

    def report_dead(self, dead):
        for name, rc in dead:
            log('%s exited with status %s; last lines of %s:\n%s' % (
                name, rc, self.log_path(name), tail(self.log_path(name))))

    def stop_all(self):
        for proc in self.children.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Anything left in the children's process groups (a stuck server or
        # one of its workers) is killed outright.
        for proc in self.children.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait()

    def run(self):
        a = self.args
        started = time.monotonic()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        if a.exit_with_parent:
            set_parent_death_signal(signal.SIGTERM)
            if os.getppid() != a.parent_pid:
                die('parent process already gone')

        account, user = a.access_key.split(':', 1)
        check_port_free(a.port, 'S3')
        memcached = None
        if not a.no_memcached:
            memcached = shutil.which('memcached') or (
                '/usr/bin/memcached' if os.access('/usr/bin/memcached',
                                                  os.X_OK) else None)
            if not memcached:
                log('memcached not found: running without it (slower)')
        if memcached:
            memcached_port = a.memcached_port or free_port()
            if a.memcached_port:
                check_port_free(memcached_port, 'memcached')
        else:
            # tempauth refuses every request unless the proxy has a memcache
            # client ("Memcache required"), so the cache filter stays. It is
            # pointed at a loopback port that this process keeps bound but
            # never listens on: connections are refused at once (swift then
            # error-limits the server) and nothing else can take the port.
            self.cache_placeholder = socket.socket(socket.AF_INET,
                                                   socket.SOCK_STREAM)
            self.cache_placeholder.bind((LOOPBACK, 0))
            memcached_port = self.cache_placeholder.getsockname()[1]

        etc = os.path.join(self.data_dir, 'etc')
        for d in (etc, os.path.join(self.data_dir, 'devices', 'd1'),
                  self.log_dir):
            os.makedirs(d, exist_ok=True)
        taken = {a.port, memcached_port}
        ports = {}
        for server in RING_FOR:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            ports[server] = port
        ports['proxy-server'] = a.port
        write_swift_conf(etc)
        build_rings(etc, ports)
        write_server_confs(self.data_dir, ports, account, user, a.secret_key,
                           memcached_port, bool(memcached))

        try:
            if memcached:
                argv = [memcached, '-l', LOOPBACK, '-p', str(memcached_port),
                        '-U', '0', '-m', '64', '-c', '1024']
                if os.geteuid() == 0:
                    argv += ['-u', 'root']
                self.spawn('memcached', argv)
            me = os.path.abspath(__file__)
            for server in SERVERS:
                self.spawn(server, [sys.executable, me, '--serve', server,
                                    '--data-dir', self.data_dir])
            rc = self.wait_ready(started,
                                 memcached_port if memcached else None)
            if rc is None:
                rc = self.supervise()
        except BaseException:
            self.stop_all()
            raise
        self.stop_all()
        return rc

    def wait_ready(self, started, memcached_port):
        a = self.args
        deadline = started + READY_TIMEOUT
        last_error = 'no attempt yet'
        while True:
            if self.stop_signal is not None:
                return 0
            dead = self.dead_children()
            if dead:
                log('a server exited during start-up')
                self.report_dead(dead)
                return 1
            if time.monotonic() > deadline:
                log('not ready after %d s (last probe: %s)'
                    % (READY_TIMEOUT, last_error))
                for name in self.children:
                    log('last lines of %s:\n%s' % (
                        self.log_path(name), tail(self.log_path(name))))
                return 1
            try:
                status, body = sigv4_list_buckets(a.port, a.access_key,
                                                  a.secret_key)
                if status == 200:
                    break
                last_error = 'HTTP %d %s' % (status, body[:300])
            except (OSError, http.client.HTTPException) as e:
                last_error = repr(e)
            time.sleep(0.1)
        if memcached_port and not wait_tcp(memcached_port, deadline):
            log('memcached did not accept connections')
            self.report_dead([('memcached', None)])
            return 1
        log('ready in %.1f s; data in %s; access log %s' % (
            time.monotonic() - started, self.data_dir,
            os.path.join(self.log_dir, 'proxy.log')))
        sys.stdout.write('READY http://%s:%d\n' % (LOOPBACK, a.port))
        sys.stdout.flush()
        return None

    def supervise(self):
        while self.stop_signal is None:
            dead = self.dead_children()
            if dead:
                self.report_dead(dead)
                return 1
            time.sleep(0.2)
        return 0


def parse_args(argv):
    p = argparse.ArgumentParser(
        description='Run Swift + s3api as a signature-checking S3 server on '
                    '127.0.0.1, with all state in one data directory.')
    p.add_argument('--data-dir', required=True,
                   help='directory for configs, rings, objects and logs')
    p.add_argument('--port', type=int, help='S3 (proxy) port on 127.0.0.1')
    p.add_argument('--access-key', help='ACCOUNT:USER (letters, digits, '
                   '"." and "-"; no "_" or ":" inside the names)')
    p.add_argument('--secret-key', help='S3 secret key (no whitespace)')
    p.add_argument('--memcached-port', type=int,
                   help='port for memcached (default: a free one)')
    p.add_argument('--no-memcached', action='store_true',
                   help='do not start memcached even if it is installed')
    p.add_argument('--exit-with-parent', action='store_true',
                   help='stop (as on SIGTERM) when the parent process exits')
    p.add_argument('--serve', metavar='NAME', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return args
    for opt in ('port', 'access_key', 'secret_key'):
        if getattr(args, opt) is None:
            p.error('--%s is required' % opt.replace('_', '-'))
    for opt in ('port', 'memcached_port'):
        v = getattr(args, opt)
        if v is not None and not 1 <= v <= 65535:
            p.error('--%s must be 1..65535' % opt.replace('_', '-'))
    if args.memcached_port is not None and args.memcached_port == args.port:
        p.error('--memcached-port must differ from --port')
    parts = args.access_key.split(':')
    if len(parts) != 2 or not all(NAME_RE.match(x) for x in parts):
        p.error('--access-key must be ACCOUNT:USER where each name is made '
                'of letters, digits, "." and "-" (no "_" or ":"), got %r'
                % args.access_key)
    if not args.secret_key or re.search(r'\s', args.secret_key):
        p.error('--secret-key must be non-empty and contain no whitespace')
    return args


def main(argv=None):
    parent_pid = os.getppid()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.parent_pid = parent_pid
    try:
        import swift  # noqa: F401
    except ImportError:
        die('cannot import swift with %s: run scripts/s3/install.sh and start '
            'this script with /usr/bin/python3' % sys.executable)
    if args.serve:
        return serve(args.serve, os.path.abspath(args.data_dir))
    return Launcher(args).run()


if __name__ == '__main__':
    sys.exit(main())
