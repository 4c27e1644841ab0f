package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/bulkexport"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

const (
	ndjson = "application/fhir+ndjson"
	// exportRetryAfter is the Retry-After of a running export, in seconds.
	exportRetryAfter = "2"
)

// Bulk Data export, system level: GET or POST /fhir/$export.
func (a *api) exportSystem(c *gin.Context) error {
	return a.exportKickoff(c, bulkexport.Request{Level: store.ExportSystem})
}

// Patient level, GET or POST /fhir/Patient/$export (the route is
// /fhir/:type/$export: a static Patient segment would hide the type routes
// from gin).
func (a *api) exportType(c *gin.Context) error {
	if c.Param("type") != "Patient" {
		return fault.New(fault.NotFound, "", "$export is served at system, Patient and Group level, not on %s", c.Param("type"))
	}
	return a.exportKickoff(c, bulkexport.Request{Level: store.ExportPatient})
}

// Group level, GET or POST /fhir/Group/{id}/$export.
func (a *api) exportInstance(c *gin.Context) error {
	if c.Param("type") != "Group" {
		return fault.New(fault.NotFound, "", "$export is served at system, Patient and Group level, not on %s instances", c.Param("type"))
	}
	if !fhir.ValidID(c.Param("id")) {
		return fault.New(fault.NotFound, "", "%q is not a valid id", c.Param("id"))
	}
	return a.exportKickoff(c, bulkexport.Request{Level: store.ExportGroup, Group: c.Param("id")})
}

// exportKickoff validates the kick-off request, creates the job and
// answers 202 with the status URL in Content-Location.
func (a *api) exportKickoff(c *gin.Context, req bulkexport.Request) error {
	if !prefers(c, "respond-async") {
		return fault.New(fault.Invalid, "", "$export runs asynchronously: send the header Prefer: respond-async")
	}
	params, err := a.exportParams(c)
	if err != nil {
		return err
	}
	lenient := preferLenient(c)
	for _, p := range params {
		if err := exportParam(&req, p, lenient); err != nil {
			return err
		}
	}
	if err := exportScopes(c, &req); err != nil {
		return err
	}
	req.URL = a.base(c) + strings.TrimPrefix(c.Request.URL.RequestURI(), "/fhir")
	if p := auth.FromContext(c.Request.Context()); p != nil {
		req.Recipient = disclosure.RecipientOf(p)
	}
	job, err := a.Exports.Kickoff(c.Request.Context(), req)
	if err != nil {
		return err
	}
	c.Header("Content-Location", a.base(c)+"/_export/"+job.ID)
	c.Data(http.StatusAccepted, fhirJSON, pretty(c, fault.OutcomeOf([]fault.Issue{{Severity: "information", Code: "informational",
		Diagnostics: "export job " + job.ID + " accepted; poll the URL in Content-Location for its status"}})))
	return nil
}

// kv is one kick-off parameter, from the query or a Parameters body.
type kv struct{ name, value string }

// exportParams are the kick-off parameters: the query's (but _format and
// _pretty) and, for POST, those of the Parameters body.
func (a *api) exportParams(c *gin.Context) ([]kv, error) {
	var out []kv
	for name, vs := range c.Request.URL.Query() {
		if name == "_format" || name == "_pretty" {
			continue
		}
		for _, v := range vs {
			out = append(out, kv{name, v})
		}
	}
	if c.Request.Method != http.MethodPost {
		return out, nil
	}
	res, err := a.parse(c, "Parameters")
	if err != nil {
		return nil, err
	}
	var body struct {
		Parameter []struct {
			Name           string
			ValueString    string
			ValueInstant   string
			ValueCode      string
			ValueReference struct{ Reference string }
		}
	}
	if err := json.Unmarshal(res.Bytes(), &body); err != nil {
		return nil, fault.Wrap(err, "read Parameters")
	}
	for _, p := range body.Parameter {
		v := p.ValueString + p.ValueInstant + p.ValueCode + p.ValueReference.Reference // one is set
		out = append(out, kv{p.Name, v})
	}
	return out, nil
}

// exportParam applies one kick-off parameter to req. Parameters this server
// does not support are 400 unless handling is lenient, as the IG asks.
func exportParam(req *bulkexport.Request, p kv, lenient bool) error {
	switch p.name {
	case "_outputFormat":
		switch p.value {
		case ndjson, "application/ndjson", "ndjson":
		default:
			return fault.New(fault.Invalid, "_outputFormat", "_outputFormat %q is not supported; the output is application/fhir+ndjson", p.value)
		}
	case "_type":
		for _, t := range strings.Split(p.value, ",") {
			t = strings.TrimSpace(t)
			switch {
			case !fhir.IsResourceType(t):
				return fault.New(fault.Invalid, "_type", "_type: %q is not a resource type", t)
			case req.Level != store.ExportSystem && !bulkexport.InPatientCompartment(t):
				if lenient {
					continue
				}
				return fault.New(fault.Invalid, "_type", "_type: %s resources are not in the Patient compartment, so a %s export has none", t, req.Level)
			}
			req.Types = append(req.Types, t)
		}
	case "_since":
		t, err := time.Parse(time.RFC3339Nano, p.value)
		if err != nil {
			return fault.New(fault.Invalid, "_since", "_since must be an instant such as 2026-01-02T03:04:05Z, not %q", p.value)
		}
		req.Since = t.UTC()
	case "patient":
		if req.Level != store.ExportPatient {
			return unsupportedExportParam(p.name, lenient)
		}
		id, ok := bulkexport.PatientID(p.value)
		if !ok {
			return fault.New(fault.Invalid, "patient", "patient must be a reference to a Patient, not %q", p.value)
		}
		req.Patients = append(req.Patients, id)
	default:
		return unsupportedExportParam(p.name, lenient)
	}
	return nil
}

func unsupportedExportParam(name string, lenient bool) error {
	if lenient {
		return nil
	}
	return fault.New(fault.Invalid, name, "$export does not support the parameter %q here (send Prefer: handling=lenient to have it ignored)", name).WithCode("not-supported")
}

// exportStatus answers GET /fhir/_export/{job}: 202 with Retry-After and
// X-Progress while the job runs, the manifest when it is done.
// exportScopes checks an export against the principal's scopes: every
// type it names, or without _type the types it would export, needs a
// user/ or system/ grant of r; without _type the export is narrowed to
// the types granted. A patient/ grant exports nothing: bulk export is for
// population-level clients. The job records its requester.
func exportScopes(c *gin.Context, req *bulkexport.Request) error {
	p, err := principal(c)
	if err != nil || p.Anonymous {
		return err
	}
	if req.Level == store.ExportGroup && p.Grant(auth.Read, "Group") < auth.UserContext {
		return forbidden("user/ or system/ Group.r") // the members are read from the Group
	}
	explicit := len(req.Types) > 0
	types := req.Types
	if !explicit {
		for _, t := range fhir.ResourceTypes() {
			if req.Level == store.ExportSystem || bulkexport.InPatientCompartment(t) {
				types = append(types, t)
			}
		}
	}
	granted, err := grantedTypes(p, auth.Read, types, explicit)
	if err != nil {
		return err
	}
	if explicit || len(granted) < len(types) {
		req.Types = granted // else every type, as without scopes
	}
	req.Requester = requester(p)
	return nil
}

// requester names a principal as an export job's requester.
func requester(p *auth.Principal) string {
	if p.Anonymous {
		return ""
	}
	return strconv.Quote(p.Issuer) + " " + strconv.Quote(p.Subject) + " " + strconv.Quote(p.ClientID)
}

// exportJob returns the job of the URL when the principal kicked it off;
// another principal's is a 403 (the local operator may see any).
func (a *api) exportJob(c *gin.Context) (*store.ExportJob, error) {
	p, err := principal(c)
	if err != nil {
		return nil, err
	}
	job, err := a.Exports.Job(c.Request.Context(), c.Param("job"))
	if err != nil {
		return nil, err
	}
	if !p.Anonymous && job.Requester != requester(p) {
		return nil, fault.New(fault.Forbidden, "", "export job %s was started by another client; only its requester may use it", job.ID)
	}
	return job, nil
}

func (a *api) exportStatus(c *gin.Context) error {
	job, err := a.exportJob(c)
	if err != nil {
		return err
	}
	if job.State != store.JobDone {
		progress := bulkexport.Progress(job)
		c.Header("Retry-After", exportRetryAfter)
		c.Header("X-Progress", progress)
		c.Data(http.StatusAccepted, fhirJSON, pretty(c, fault.OutcomeOf([]fault.Issue{{Severity: "information", Code: "informational", Diagnostics: "export in progress: " + progress}})))
		return nil
	}
	type output struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int64  `json:"count"`
	}
	m := struct {
		TransactionTime     string   `json:"transactionTime"`
		Request             string   `json:"request"`
		RequiresAccessToken bool     `json:"requiresAccessToken"`
		Output              []output `json:"output"`
		Error               []output `json:"error"`
	}{
		TransactionTime: job.TransactionTime.UTC().Format(fhir.InstantLayout), Request: job.Request,
		Output: []output{}, Error: []output{},
	}
	for _, f := range job.Files {
		if f.Count > 0 {
			m.Output = append(m.Output, output{Type: f.Type, URL: a.base(c) + "/_export/" + job.ID + "/" + f.Type + ".ndjson", Count: f.Count})
		}
	}
	if lines := withheldOutcomes(job); len(lines) > 0 {
		m.Error = append(m.Error, output{Type: "OperationOutcome", URL: a.base(c) + "/_export/" + job.ID + "/" + withheldFile, Count: int64(len(lines))})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fault.Wrap(err, "render export manifest")
	}
	c.Header("Expires", job.Expires.UTC().Format(http.TimeFormat))
	c.Data(http.StatusOK, "application/json; charset=utf-8", pretty(c, b))
	return nil
}

// withheldFile is the error file of an export that withheld sensitive
// resources (no type is spelled so).
const withheldFile = "withheld.ndjson"

// withheldOutcomes are the lines of withheldFile: per type with withheld
// resources, an OperationOutcome saying how many (never which).
func withheldOutcomes(job *store.ExportJob) [][]byte {
	var lines [][]byte
	for _, f := range job.Files {
		if f.Withheld > 0 {
			lines = append(lines, fault.OutcomeOf([]fault.Issue{disclosure.WithheldIssue(f.Withheld, f.Type+" resources")}))
		}
	}
	return lines
}

// exportCancel answers DELETE /fhir/_export/{job}: the job and its files
// are removed (a runner working on it stops at its next batch).
func (a *api) exportCancel(c *gin.Context) error {
	if _, err := a.exportJob(c); err != nil {
		return err
	}
	if err := a.Exports.Cancel(c.Request.Context(), c.Param("job")); err != nil {
		return err
	}
	c.Data(http.StatusAccepted, fhirJSON, pretty(c, fault.OutcomeOf([]fault.Issue{{Severity: "information", Code: "informational",
		Diagnostics: "export job " + c.Param("job") + " cancelled and its files deleted"}})))
	return nil
}

// exportFile answers GET /fhir/_export/{job}/{Type}.ndjson: the file's
// chunks are read and written one at a time, never the whole file.
func (a *api) exportFile(c *gin.Context) error {
	ctx := c.Request.Context()
	job, err := a.exportJob(c)
	if err != nil {
		return err
	}
	if c.Param("file") == withheldFile && job.State == store.JobDone {
		if lines := withheldOutcomes(job); len(lines) > 0 {
			c.Data(http.StatusOK, ndjson, append(bytes.Join(lines, []byte("\n")), '\n'))
			return nil
		}
	}
	typ, ok := strings.CutSuffix(c.Param("file"), ".ndjson")
	var file *store.ExportFile
	for i := range job.Files {
		if ok && job.State == store.JobDone && job.Files[i].Type == typ && job.Files[i].Count > 0 {
			file = &job.Files[i]
		}
	}
	if file == nil {
		return fault.New(fault.NotFound, "", "export job %s has no file %q", job.ID, c.Param("file"))
	}
	// The first chunk is read before the status is sent, so a store that
	// does not answer is still a 503.
	chunk, err := a.Exports.Chunk(ctx, job.ID, file.First)
	if err != nil {
		return err
	}
	c.Header("Content-Type", ndjson)
	c.Status(http.StatusOK)
	for n := file.First; ; {
		if _, err := c.Writer.Write(chunk); err != nil {
			return nil // the client went away
		}
		c.Writer.Flush()
		if n++; n >= file.Last {
			return nil
		}
		if chunk, err = a.Exports.Chunk(ctx, job.ID, n); err != nil {
			// Too late for an error status: abort, so the client sees a
			// truncated transfer instead of a short file.
			a.Logger.ErrorContext(ctx, "export file read failed", "job", job.ID, "error", fault.As(err).Error())
			panic(http.ErrAbortHandler)
		}
	}
}
