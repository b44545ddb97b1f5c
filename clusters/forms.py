"""The import form, shared by the admin and the portal (the API has its serializer)."""

from django import forms

from clusters.kube import importer
from clusters.models import ClusterKind, name_taken_error
from clusters.registry import register_imported


class ClusterImportForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kubeconfig = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
                                 help_text="Paste the output of: kubectl config view --raw --flatten --minify")
    kubeconfig_file = forms.FileField(required=False, label="or upload a kubeconfig")
    context = forms.CharField(required=False, help_text="Which context, when the kubeconfig has several")
    server = forms.CharField(required=False, label="or: API server URL", help_text="https://...")
    ca_data = forms.CharField(required=False, label="CA certificate (PEM)", widget=forms.Textarea(attrs={"rows": 4}))
    token = forms.CharField(required=False, label="Bearer token", widget=forms.PasswordInput(render_value=False))
    docker_endpoint = forms.CharField(required=False, max_length=300, label="or: a Docker Swarm manager's endpoint",
                                      help_text="unix:///var/run/docker.sock, tcp://host:2376 (with the TLS certificates below) or ssh://user@host")
    tls_ca = forms.CharField(required=False, label="Swarm TLS: CA certificate (PEM)", widget=forms.Textarea(attrs={"rows": 3}))
    tls_cert = forms.CharField(required=False, label="Swarm TLS: client certificate (PEM)", widget=forms.Textarea(attrs={"rows": 3}))
    tls_key = forms.CharField(required=False, label="Swarm TLS: client key (PEM)", widget=forms.Textarea(attrs={"rows": 3}))
    ssh_key = forms.CharField(required=False, label="Swarm SSH: private key", widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                              help_text="OpenSSH or PEM, without a passphrase (kept encrypted)")
    ssh_host_key = forms.CharField(required=False, label="Swarm SSH: the host's key", widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
                                   help_text="ssh-keyscan -p PORT HOST output, the host's public key, or its SHA256: fingerprint")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        problem = name_taken_error(name, self.user)
        if problem:
            raise forms.ValidationError(problem)
        return name

    def clean(self):
        data = super().clean()
        upload = data.get("kubeconfig_file")
        if upload:
            if upload.size > importer.MAX_KUBECONFIG_BYTES:
                raise forms.ValidationError({"kubeconfig_file": "the file is too large to be a kubeconfig"})
            try:
                data["kubeconfig"] = upload.read().decode()
            except UnicodeDecodeError:
                raise forms.ValidationError({"kubeconfig_file": "the file is not text"}) from None
        by_kubeconfig = bool(data.get("kubeconfig", "").strip())
        by_token = bool(data.get("server") or data.get("token"))
        if data.get("docker_endpoint", "").strip():
            if by_kubeconfig or by_token:
                raise forms.ValidationError("Give a kubeconfig, an API server and token, or a Docker endpoint: one of them.")
            return self._clean_swarm(data)
        if by_kubeconfig == by_token:
            raise forms.ValidationError("Give either a kubeconfig, or the API server URL, CA certificate and token.")
        if self.errors:
            return data
        try:
            if by_kubeconfig:
                credentials = importer.credentials_from_kubeconfig(data["kubeconfig"], data.get("context") or None)
            else:
                credentials = importer.credentials_from_token(data.get("server", ""), data.get("ca_data", ""), data.get("token", ""))
            data["version"] = importer.verify(credentials)
        except importer.ImportProblem as problem:
            field = problem.field if problem.field in self.fields else None
            if by_kubeconfig and field not in ("context",):
                field = "kubeconfig"
            raise forms.ValidationError({field: problem.message} if field else problem.message) from None
        data["credentials"] = credentials
        return data

    def _clean_swarm(self, data):
        from clusters.swarm import importer as swarm_importer

        if self.errors:
            return data
        try:
            credentials = swarm_importer.credentials_from(data["docker_endpoint"], data.get("tls_ca"), data.get("tls_cert"), data.get("tls_key"),
                                                         data.get("ssh_key"), data.get("ssh_host_key"))
            data["version"] = swarm_importer.verify(credentials)["version"]
        except importer.ImportProblem as problem:
            field = "docker_endpoint" if problem.field == "endpoint" else problem.field
            raise forms.ValidationError({field: problem.message}) from None
        data["credentials"], data["kind"] = credentials, ClusterKind.SWARM
        return data

    def save(self, user):
        data = self.cleaned_data
        return register_imported(
            name=data["name"], credentials=data["credentials"], version=data["version"], user=user,
            description=data.get("description", ""), kind=data.get("kind", ClusterKind.KUBERNETES),
        )
