from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex
from setuptools.command.build_py import build_py

# note: all settings are in settings.ini; edit there, not here
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

licenses = {
    'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License'),
    'mit': ('MIT License', 'OSI Approved :: MIT License'),
}
statuses = [ '1 - Planning', '2 - Pre-Alpha', '3 - Alpha',
    '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive' ]
py_versions = '3.9 3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
if cfg.get('pip_requirements'): requirements += shlex.split(cfg.get('pip_requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
dev_requirements = (cfg.get('dev_requirements') or '').split()

package_data = dict()
pkg_data = cfg.get('package_data', None)
if pkg_data:
    package_data[cfg['lib_name']] =  [pkg_data]

# The run templates (papermill notebooks, not exported by nbdev) live in nbs/_runs, their one source; a build copies them
# into the package as llamaduo/runs/*.ipynb, where `llamaduo.loop.runs_notebook` finds them outside the repo.
RUNS_SRC = Path(cfg.get('nbs_path', 'nbs'))/'_runs'

class BuildPyWithRuns(build_py):
    "build_py that also copies nbs/_runs/*.ipynb into the built package's runs/ folder (not for editable installs: the repo has them)."
    def _runs(self):
        if getattr(self, 'editable_mode', False): return []
        nbs = sorted(RUNS_SRC.glob('*.ipynb'))
        if not nbs: raise FileNotFoundError(f'no run templates in {RUNS_SRC}: the package would not run its loop')
        dst = Path(self.build_lib)/cfg['lib_path']/'runs'
        return [(str(nb), str(dst/nb.name)) for nb in nbs]

    def run(self):
        super().run()
        for src, dst in self._runs():
            self.mkpath(str(Path(dst).parent)); self.copy_file(src, dst, preserve_mode=False)

    def get_outputs(self, *args, **kw): return super().get_outputs(*args, **kw) + [dst for _, dst in self._runs()]

setuptools.setup(
    name = cfg['lib_name'],
    license = 'Apache-2.0',
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]],
    url = cfg['git_url'],
    packages = setuptools.find_packages(),
    include_package_data = True,
    package_data = {cfg['lib_name']: ['recipes/*.yaml', 'templates/*', 'accelerate/*.yaml']},
    cmdclass = {'build_py': BuildPyWithRuns},
    install_requires = requirements,
    extras_require={ 'dev': dev_requirements, 'vllm': ['vllm'] },
    dependency_links = cfg.get('dep_links','').split(),
    python_requires  = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
    **setup_cfg)
